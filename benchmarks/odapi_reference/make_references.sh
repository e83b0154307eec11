#!/usr/bin/env bash
# Reruns the reference dumps: full-size and tiny variants of three configs into $OUT
# (default /tmp/parity_ref). Usage: make_references.sh [NAME...]  (default: all six;
# `tiny_all` dumps a tiny variant of every TF2 SSD / EfficientDet config into $OUT/tiny_all/;
# ONLY='ssd_resnet*' restricts it to matching config names).
# Needs the reference env (/tmp/odapi-ref, built by ../shared/odapi-reference/setup).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${PYTHON:-/tmp/odapi-ref/bin/python}"
CONFIGS="${CONFIGS:-$HERE/../../../shared/data/odapi/configs/tf2}"
RACCOON="${RACCOON:-$HERE/../../../shared/data/raccoon/images}"
OUT="${OUT:-/tmp/parity_ref}"
IMAGES=("$RACCOON/raccoon-1.jpg" "$RACCOON/raccoon-10.jpg")
CALIBRATION=("${IMAGES[@]}" "$RACCOON"/raccoon-10{0..5}.jpg)

dump() {  # NAME CONFIG [ARGS...]
  local name="$1" config="$2"; shift 2
  echo "== $name"
  "$PYTHON" "$HERE/dump_reference.py" --config "$CONFIGS/$config.config" --images "${IMAGES[@]}" \
    --calibration_images "${CALIBRATION[@]}" --seed 0 --output_dir "$OUT/$name" "$@"
}

TINY_COMMON=(--override model.ssd.num_classes=2 --max_image_dim 160)
declare -A RUNS
RUNS[ssd_mobilenet_v2_320x320]="dump ssd_mobilenet_v2_320x320 ssd_mobilenet_v2_320x320_coco17_tpu-8"
RUNS[ssd_resnet50_v1_fpn_640x640]="dump ssd_resnet50_v1_fpn_640x640 ssd_resnet50_v1_fpn_640x640_coco17_tpu-8"
RUNS[ssd_efficientdet_d0_512x512]="dump ssd_efficientdet_d0_512x512 ssd_efficientdet_d0_512x512_coco17_tpu-8"
tiny_ssd_mobilenet_v2() {
  dump tiny_ssd_mobilenet_v2 ssd_mobilenet_v2_320x320_coco17_tpu-8 "${TINY_COMMON[@]}" \
    --override model.ssd.image_resizer.fixed_shape_resizer.height=96 \
    --override model.ssd.image_resizer.fixed_shape_resizer.width=96 \
    --override model.ssd.feature_extractor.depth_multiplier=0.125
}
tiny_ssd_resnet50_v1_fpn() {
  dump tiny_ssd_resnet50_v1_fpn ssd_resnet50_v1_fpn_640x640_coco17_tpu-8 "${TINY_COMMON[@]}" \
    --override model.ssd.image_resizer.fixed_shape_resizer.height=160 \
    --override model.ssd.image_resizer.fixed_shape_resizer.width=160 \
    --override model.ssd.feature_extractor.depth_multiplier=0.0625 \
    --override model.ssd.feature_extractor.min_depth=8 \
    --override model.ssd.box_predictor.weight_shared_convolutional_box_predictor.depth=16
}
tiny_ssd_efficientdet_d0() {
  dump tiny_ssd_efficientdet_d0 ssd_efficientdet_d0_512x512_coco17_tpu-8 "${TINY_COMMON[@]}" \
    --override model.ssd.image_resizer.keep_aspect_ratio_resizer.min_dimension=256 \
    --override model.ssd.image_resizer.keep_aspect_ratio_resizer.max_dimension=256 \
    --override model.ssd.feature_extractor.bifpn.num_filters=16 \
    --override model.ssd.box_predictor.weight_shared_convolutional_box_predictor.depth=16
}
tiny_all() {  # every TF2 SSD / EfficientDet config, tiny, into $OUT/tiny_all/CONFIG
  local config name size args failed=()
  for config in "$CONFIGS"/ssd_*.config; do
    name="$(basename "$config" .config)"
    case "$name" in
      ssd_efficientdet_*)
        args=(--override model.ssd.image_resizer.keep_aspect_ratio_resizer.min_dimension=256
              --override model.ssd.image_resizer.keep_aspect_ratio_resizer.max_dimension=256
              --override model.ssd.feature_extractor.bifpn.num_filters=16) ;;
      ssd_resnet*)
        args=(--override model.ssd.feature_extractor.depth_multiplier=0.0625
              --override model.ssd.feature_extractor.min_depth=8) ;;
      *) args=(--override model.ssd.feature_extractor.depth_multiplier=0.125) ;;
    esac
    case "$name" in
      ssd_mobilenet_v2_320x320*) size=96 ;;
      *) size=160 ;;
    esac
    if [[ "$name" != ssd_efficientdet_* ]]; then
      args+=(--override model.ssd.image_resizer.fixed_shape_resizer.height=$size
             --override model.ssd.image_resizer.fixed_shape_resizer.width=$size)
    fi
    if grep -q weight_shared_convolutional_box_predictor "$config"; then
      args+=(--override model.ssd.box_predictor.weight_shared_convolutional_box_predictor.depth=16)
    fi
    if [ -n "${ONLY:-}" ] && [[ "$name" != $ONLY ]]; then continue; fi
    dump "tiny_all/$name" "$name" "${TINY_COMMON[@]}" "${args[@]}" || failed+=("$name")
  done
  if [ ${#failed[@]} -gt 0 ]; then echo "failed: ${failed[*]}" >&2; return 1; fi
}
RUNS[tiny_all]=tiny_all
RUNS[tiny_ssd_mobilenet_v2]=tiny_ssd_mobilenet_v2
RUNS[tiny_ssd_resnet50_v1_fpn]=tiny_ssd_resnet50_v1_fpn
RUNS[tiny_ssd_efficientdet_d0]=tiny_ssd_efficientdet_d0

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  names=(tiny_ssd_mobilenet_v2 tiny_ssd_resnet50_v1_fpn tiny_ssd_efficientdet_d0
         ssd_mobilenet_v2_320x320 ssd_resnet50_v1_fpn_640x640 ssd_efficientdet_d0_512x512)
fi
for name in "${names[@]}"; do
  [ -n "${RUNS[$name]:-}" ] || { echo "unknown run $name (known: ${!RUNS[*]})" >&2; exit 2; }
  ${RUNS[$name]}
done
