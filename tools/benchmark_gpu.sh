#!/usr/bin/env bash
# The GPU speed table of issue 12, on one machine in one go: the MTL-AQA authors' PyTorch
# C3D-AVG (score + sub-actions, no captions; tools/benchmark_reference.py) and aqa-tf's
# C3D-AVG-MTL with the same heads under Keras's JAX backend (python -m aqa_tf.benchmark, which
# needs no TensorFlow there), float32 and bfloat16, training and inference, same batch.
#
#   tools/benchmark_gpu.sh REFERENCE_DIR OUT_DIR
#
# REFERENCE_DIR: their models/C3DAVG folder (see tools/README.md). Each run writes its JSON into
# OUT_DIR and prints its table. Environment: BATCH (default 12), CLIPS (16-frame clips per
# sample, default 6: the paper's 96 frames), WARMUP (3) and STEPS (10) per measurement, DEVICE
# (cuda; cpu only to try the script on a machine without a GPU), PARTS (default "reference aqa":
# which side to run).
#
# The reference runs three times per precision: with cuDNN deterministic, as their training
# script sets it; with cuDNN's benchmark mode, PyTorch at its fastest; and so with the batch
# moved to the GPU once (--batch_on_device). aqa-tf runs twice: the batch passed from host memory
# at every step (its training runs through Keras's fit, which on JAX copies the next batch to the
# GPU while a step computes), and placed on the GPU once (--batch_on_device). Its peak column is
# C3D's conv3a over the whole batch's clips (BATCH x CLIPS clips of 8x28x28x128 -> 256).
set -uo pipefail
if [[ $# -ne 2 ]]; then
  echo "usage: $0 REFERENCE_DIR OUT_DIR" >&2
  exit 2
fi
reference_dir=$1
out=$2
batch=${BATCH:-12}
clips=${CLIPS:-6}
warmup=${WARMUP:-3}
steps=${STEPS:-10}
device=${DEVICE:-cuda}
parts=${PARTS:-reference aqa}
cd "$(dirname "$0")/.."
mkdir -p "$out"
status=0

if [[ $device == cuda ]]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
fi
KERAS_BACKEND=jax python3 -c "import sys, jax, keras, torch; print('python', sys.version.split()[0], '| jax',
jax.__version__, jax.devices(), '| keras', keras.__version__, '| torch', torch.__version__)"

for precision in fp32 bf16; do
  [[ $parts == *reference* ]] || break
  for mode in deterministic benchmark benchmark_on_device; do
    cudnn=${mode%_on_device}
    on_device=$([[ $mode == *_on_device ]] && echo --batch_on_device || echo --nobatch_on_device)
    python3 tools/benchmark_reference.py --reference_dir="$reference_dir" --device="$device" \
      --nocaptions --batch_size="$batch" --num_clips="$clips" --precision="$precision" \
      --cudnn="$cudnn" $on_device --warmup_steps="$warmup" --benchmark_steps="$steps" \
      --benchmark_output="$out/reference_${precision}_${mode}.json" || status=1
  done
done

for precision in none mixed_bfloat16; do
  [[ $parts == *aqa* ]] || break
  for on_device in nobatch_on_device batch_on_device; do
    KERAS_BACKEND=jax python3 -m aqa_tf.benchmark --flagfile=configs/mtl_aqa_c3d_avg_mtl.cfg \
      --heads=score,dive --data_dir= --batch_size="$batch" --num_frames=$((16 * clips)) \
      --sample_length=$((16 * clips + 7)) --mixed_precision="$precision" --"$on_device" \
      --peak_conv="$((batch * clips)),8,28,28,128,256" --warmup_steps="$warmup" \
      --benchmark_steps="$steps" --benchmark_output="$out/aqa_jax_${precision}_${on_device}.json" \
      || status=1
  done
done
exit $status
