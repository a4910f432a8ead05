"""Evaluation suites: linear, fine-tuning, kNN, VOC07 SVM, transfer, detection, t-SNE."""
