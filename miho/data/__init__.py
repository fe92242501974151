"""Data (paper §6.1): the object library (:mod:`~miho.data.objects`), the grasp library
(:mod:`~miho.data.grasps`), the headless renderer (:mod:`~miho.data.render`), the SynthHO
Dataset (:mod:`~miho.data.synthho`) and converted real datasets (:mod:`~miho.data.real`)."""
