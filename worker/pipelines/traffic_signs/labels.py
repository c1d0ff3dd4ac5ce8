"""The names of the 43 GTSRB classes; the index is the class id (the folder name `000NN`).

The chapter only uses bare ids 0..42; these are the standard GTSRB names, used in reports and
predictions so that a person reads "Stop" rather than "14".
"""

from __future__ import annotations

N_CLASSES = 43

GTSRB_LABELS: tuple[str, ...] = (
    "Speed limit (20km/h)",
    "Speed limit (30km/h)",
    "Speed limit (50km/h)",
    "Speed limit (60km/h)",
    "Speed limit (70km/h)",
    "Speed limit (80km/h)",
    "End of speed limit (80km/h)",
    "Speed limit (100km/h)",
    "Speed limit (120km/h)",
    "No passing",
    "No passing for vehicles over 3.5 metric tons",
    "Right-of-way at the next intersection",
    "Priority road",
    "Yield",
    "Stop",
    "No vehicles",
    "Vehicles over 3.5 metric tons prohibited",
    "No entry",
    "General caution",
    "Dangerous curve to the left",
    "Dangerous curve to the right",
    "Double curve",
    "Bumpy road",
    "Slippery road",
    "Road narrows on the right",
    "Road work",
    "Traffic signals",
    "Pedestrians",
    "Children crossing",
    "Bicycles crossing",
    "Beware of ice/snow",
    "Wild animals crossing",
    "End of all speed and passing limits",
    "Turn right ahead",
    "Turn left ahead",
    "Ahead only",
    "Go straight or right",
    "Go straight or left",
    "Keep right",
    "Keep left",
    "Roundabout mandatory",
    "End of no passing",
    "End of no passing by vehicles over 3.5 metric tons",
)


def label_for(class_id: int) -> str:
    """The GTSRB name of `class_id`; ValueError outside 0..42."""
    if not 0 <= class_id < N_CLASSES:
        raise ValueError(f"class id {class_id} is out of range 0..{N_CLASSES - 1}")
    return GTSRB_LABELS[class_id]
