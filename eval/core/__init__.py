"""The evaluation core: what every suite shares, so that a suite's file holds only its protocol.

- `data`: `DataSpec`, one split of a registered data set (`--dataset/--root/--options/--limit`);
- `encoders`: encoder files to backbones (strict loading, the run's status), the feature layers,
  the device;
- `extraction`: frozen features of a checkpoint, cached, in one process or shared by torchrun ranks;
- `sharded`: a training batch split over torchrun ranks (augmented linear evaluation, fine-tuning);
- `training`: the new linear layer and the presets' SGD and learning-rate schedule;
- `records`: accuracies and the metrics record every suite writes, through one `write_record`;
- `cli`: the command-line arguments, the torchrun process and `finish`, shared by the eval CLIs.
"""
