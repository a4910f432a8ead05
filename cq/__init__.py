"""Contrastive Quant: CQ-A/B/C and CQ-Quant objectives on SimCLR and BYOL."""
