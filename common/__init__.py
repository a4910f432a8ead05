"""What both papers share: quantizers, binary layers, backbones, data and views, losses,
heads, optimizers, the SSL base methods and the training engine.

`common` imports from no other package of this repository.
"""
