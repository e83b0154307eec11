"""The OD API's person keypoints label map (object_detection/data/
person_keypoints_label_map.pbtxt), which the TF2 keypoint configs' placeholder
``keypoint_label_map_path`` stands for. No TensorFlow here: model_speed.py imports it too."""

from __future__ import annotations

COCO_KEYPOINTS = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
                  "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                  "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
                  "right_ankle"]
PERSON_KEYPOINTS_LABEL_MAP = (
    'item {\n  name: "/m/01g317"\n  id: 1\n  display_name: "person"\n'
    + "".join(f'  keypoints {{\n    id: {i}\n    label: "{label}"\n  }}\n'
              for i, label in enumerate(COCO_KEYPOINTS))
    + "}\n")
PLACEHOLDER = "PATH_TO_BE_CONFIGURED"
