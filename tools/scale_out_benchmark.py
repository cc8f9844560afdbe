r"""Measures the scale-out commands on this machine, in one run: dataset conversion
(`tfrecords_tools.mtl_aqa`) and batch scoring (`aqa_tf.batch_predict`) with 1 and 2 workers,
on the process pool / in-process path (`--runner=local`) and on Beam's DirectRunner, against
`aqa_tf.predict` scoring the same videos.

  python tools/scale_out_benchmark.py --samples 32 --output /tmp/scale_out.json

Needs Apache Beam (`pip install -r requirements-beam.txt`). The inputs are synthetic: an
MTL-AQA tree of event videos (`--frames` per dive at `--height` x `--width`, 30 frames/s;
the records keep 103 frames of each at 86x64) and the same dives as
separate video files, scored with the quickstart model (random weights). Every figure is the
wall time of a whole command line (its start-up included), as a user sees it; the CPU is
printed with them (figures of different machines do not compare).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            info = {k.strip(): v for k, v in (line.split(":", 1) for line in f if ":" in line)}
        return (f"{info['model name'].strip()} (family {info['cpu family'].strip()} model "
                f"{info['model'].strip()}), {os.cpu_count()} CPUs")
    except (OSError, KeyError):
        return f"{platform.processor() or 'unknown CPU'}, {os.cpu_count()} CPUs"


def timed(command, expect=(0,)) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *command], cwd=REPO_ROOT, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - start
    if proc.returncode not in expect:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n"
                         f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--frames", type=int, default=110, help="frames of each dive")
    parser.add_argument("--output", default="")
    args = parser.parse_args()

    from aqa_tf.data import synthetic
    from aqa_tf.data import video as video_lib
    from tfrecords_tools import mtl_aqa_raw
    from tests.predict_test import quickstart_model
    from aqa_tf.serving import export_lib

    work = tempfile.mkdtemp(prefix="scale_out_")
    print(f"CPU: {cpu_name()}\nwork folder: {work}", flush=True)
    n = args.samples
    samples = [synthetic.make_sample("train", i, 0, args.frames, args.height, args.width)
               for i in range(n // 2)] + [
        synthetic.make_sample("test", i, 0, args.frames, args.height, args.width)
        for i in range(n - n // 2)]
    raw = os.path.join(work, "raw")
    mtl_aqa_raw.write_raw_dataset(raw, samples, synthetic.synthetic_vocabulary(), fps=30,
                                  write_frames=False)
    videos = os.path.join(work, "videos")
    os.makedirs(videos)
    for i, sample in enumerate(samples):
        video_lib.write_video(os.path.join(videos, f"{i:03d}.mp4"),
                              sample.frames[:sample.end_index + 1], 30)
    model, data_config = quickstart_model()
    export = export_lib.export_saved_model(model, data_config,
                                           os.path.join(work, "export", "quickstart", "1"))

    convert = ["-m", "tfrecords_tools.mtl_aqa", f"--annotations_dir={raw}",
               f"--videos_dir={os.path.join(raw, 'videos')}", "--sample_length=103",
               "--width=86", "--height=64"]
    results = {"cpu": cpu_name(), "samples": n, "frames": args.frames,
               "source_size": [args.height, args.width],
               "convert_samples_per_s": {}, "score_videos_per_s": {}}
    for runner in ("local", "DirectRunner"):
        for workers in (1, 2):
            seconds = timed(convert + [f"--out_dir={work}/records_{runner}_{workers}",
                                       f"--runner={runner}", f"--num_workers={workers}"])
            results["convert_samples_per_s"][f"{runner}, {workers} worker(s)"] = n / seconds
            print(f"convert {runner} x{workers}: {seconds:.1f} s, {n / seconds:.2f} samples/s",
                  flush=True)

    all_videos = sorted(os.path.join(videos, v) for v in os.listdir(videos))
    seconds = timed(["-m", "aqa_tf.predict", *all_videos, f"--model={export}",
                     f"--output_json={work}/predict.json", "--noprogress"])
    results["score_videos_per_s"]["aqa_tf.predict"] = n / seconds
    print(f"aqa_tf.predict: {seconds:.1f} s, {n / seconds:.2f} videos/s", flush=True)
    runs = [("local", 1), ("DirectRunner", 1), ("DirectRunner", 2)]
    for runner, workers in runs:
        seconds = timed(["-m", "aqa_tf.batch_predict", f"--model={export}",
                         f"--inputs={videos}/*.mp4", f"--output={work}/batch_{runner}_{workers}",
                         f"--runner={runner}", f"--num_workers={workers}"])
        key = f"batch_predict {runner}" + ("" if runner == "local" else f", {workers} worker(s)")
        results["score_videos_per_s"][key] = n / seconds
        print(f"{key}: {seconds:.1f} s, {n / seconds:.2f} videos/s", flush=True)
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=1)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
