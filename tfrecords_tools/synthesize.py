r"""Writes the synthetic diving dataset (`aqa_tf.data.synthetic`).

  python -m tfrecords_tools.synthesize --out_dir data/synthetic --num_train 240 --num_test 100

`--format=tfrecord` (default) writes our TFRecord shards, `vocab.json` and `dataset_info.json`;
`--format=mtl_aqa_raw` writes the same dives as event videos (.mp4), extracted frames and
annotation pickles in the real MTL-AQA layout, to exercise the real-data converter end to end.
`--judge_scores` adds 7 judges' scores consistent with each final score and a dive number: to
the records (tfrecord), or as `final_annotations_dict_with_dive_number.pkl` (mtl_aqa_raw).
"""

from absl import flags

from aqa_tf import flag_defs
from aqa_tf.data import synthetic

FLAGS = flags.FLAGS


def define_flags():
    flag_defs.define_config_flags(synthetic.SyntheticDataConfig)
    flags.DEFINE_string("out_dir", None, "Output folder (--format=tfrecord: written as a "
                        "whole, refused when it holds files unless --overwrite).")
    flags.DEFINE_bool("overwrite", False, "Replace the contents of a non-empty --out_dir.")
    flags.DEFINE_enum("format", "tfrecord", ["tfrecord", "mtl_aqa_raw"],
                      "'tfrecord': our TFRecords; 'mtl_aqa_raw': .mp4 event videos, extracted "
                      "frames and annotation pickles in the real MTL-AQA layout.")
    flags.DEFINE_bool("judge_scores", False, "Also write 7 judges' scores per dive (consistent "
                      "with its final score) and a dive number.")
    flags.mark_flag_as_required("out_dir")


def main(argv):
    del argv
    config = flag_defs.config_from_flags(synthetic.SyntheticDataConfig)
    if FLAGS.format == "tfrecord":
        info = synthetic.write_tfrecords(FLAGS.out_dir, config, overwrite=FLAGS.overwrite,
                                         judges=FLAGS.judge_scores)
        print(f"Wrote {info['num_train']} train and {info['num_test']} test samples to "
              f"{FLAGS.out_dir}")
        return
    from tfrecords_tools import mtl_aqa_raw
    samples = [sample for split, count in (("train", config.num_train), ("test", config.num_test))
               for sample in synthetic.generate_split(split, count, config.seed, config.num_frames,
                                                      config.height, config.width,
                                                      config.jitter_margin, config.steps,
                                                      config.dive_types)]
    paths = mtl_aqa_raw.write_raw_dataset(FLAGS.out_dir, samples, synthetic.synthetic_vocabulary(),
                                          judges=FLAGS.judge_scores)
    print(f"Wrote the MTL-AQA raw layout to {FLAGS.out_dir}: {paths}")


if __name__ == "__main__":
    define_flags()
    flag_defs.run(main)
