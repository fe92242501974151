"""Training: the loop shared by every network (:mod:`miho.train.trainer`), checkpoints
(:mod:`miho.train.checkpoints`), and each network's task, data and losses (PiCR:
:mod:`miho.train.picr`, :mod:`miho.train.picr_data`, :mod:`miho.train.losses`)."""
