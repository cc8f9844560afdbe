"""Video files -> uint8 frames, for scoring a user's own video (`aqa_tf.predict`) and for the
converters of video releases (`read_uniform_frames`: JIGSAWS).

Decoding is PyAV (any container and codec FFmpeg reads). Frames are resampled to the frame rate
the model was trained at and resized exactly as the MTL-AQA converter stores them
(`resize_frame`, which `tfrecords_tools.mtl_aqa` also uses), one frame at a time, so that a long
broadcast at 1280x720 never sits in memory at full size.
"""

import dataclasses
import os
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np


class VideoError(ValueError):
    """A video cannot be read; the message names the file and the problem."""


def resize_frame(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """RGB uint8 `[H, W, 3]` -> `[height, width, 3]`: OpenCV area averaging when shrinking,
    bilinear when enlarging (the converter's resize; the aspect ratio is not kept, as in the
    MTL-AQA release where 16:9 broadcasts are stored at 171x128)."""
    import cv2
    if frame.shape[1] == width and frame.shape[0] == height:
        return frame
    interpolation = cv2.INTER_AREA if frame.shape[1] > width else cv2.INTER_LINEAR
    return cv2.resize(frame, (width, height), interpolation=interpolation)


@dataclasses.dataclass
class Video:
    """Decoded frames of one file.

    Attributes:
      path: the file.
      frames: uint8 `[T, height, width, 3]`, at `frame_rate`.
      frame_rate: frames per second of `frames` (the source rate when not resampled).
      source_rate: frames per second of the file.
      source_size: (height, width) of the file's frames.
      times: `[T]` presentation time (seconds) of each frame of `frames`.
    """

    path: str
    frames: np.ndarray
    frame_rate: float
    source_rate: float
    source_size: Tuple[int, int]
    times: np.ndarray

    def index_at(self, seconds: float) -> int:
        """Index of the last frame shown at `seconds` (clamped to the video)."""
        return int(np.clip(np.searchsorted(self.times, seconds + 1e-6, side="right") - 1, 0,
                           len(self.frames) - 1))


def _open(path: str):
    import av
    if not os.path.exists(path):
        raise VideoError(f"{path}: no such file")
    if os.path.isdir(path):
        raise VideoError(f"{path}: is a folder, not a video file")
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise VideoError(f"{path}: cannot be opened as a video, it is not one or it is "
                         f"truncated ({_reason(error)})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream")
    return container


def _reason(error: Exception) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return text.split(": '")[0].strip() or type(error).__name__


def _decoded_frames(container, path: str) -> Iterator[Tuple[float, object]]:
    """(time in seconds, frame) in presentation order; a corrupt stream raises VideoError."""
    import av
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    time_base = float(stream.time_base) if stream.time_base else 0.0
    rate = float(stream.average_rate or stream.guessed_rate or 25)
    count = 0
    try:
        for frame in container.decode(stream):
            seconds = frame.pts * time_base if frame.pts is not None and time_base else count / rate
            count += 1
            yield seconds, frame
    except av.error.FFmpegError as error:
        raise VideoError(f"{path}: corrupt video stream after {count} frames "
                         f"({_reason(error)})") from None


def _sample_and_hold(timed_images, frame_rate: float, source_rate: float):
    """(time, image) in presentation order -> (time, image) at `frame_rate`: each output time
    shows the last source frame presented at or before it."""
    count, held, last = 0, None, 0.0
    for seconds, image in timed_images:
        while held is not None and count / frame_rate < seconds - 1e-6:
            yield count / frame_rate, held
            count += 1
        held, last = image, seconds
    if held is not None:  # the last frame is shown for one source frame period
        while count / frame_rate < last + 1.0 / source_rate - 1e-6:
            yield count / frame_rate, held
            count += 1


def read_video(path: str, frame_rate: float = 0.0, size: Optional[Tuple[int, int]] = None,
               progress: bool = False) -> Video:
    """Decodes `path` to uint8 RGB frames.

    Args:
      path: any file PyAV opens.
      frame_rate: resample to this many frames per second (each output time shows the last
        source frame presented at or before it); 0: keep the file's frames.
      size: (height, width) to resize every frame to with `resize_frame`; None: keep.
      progress: show a progress bar (tqdm) while decoding.

    Raises:
      VideoError: missing or unreadable file, no video stream, a corrupt or truncated stream,
        no frames.
    """
    from tqdm import tqdm
    decoded, span = 0, 0.0
    with _open(path) as container:
        stream = container.streams.video[0]
        source_rate = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
        source_size = (stream.codec_context.height, stream.codec_context.width)
        announced = stream.frames  # 0 when the container does not say
        total = announced or (int(float(stream.duration * stream.time_base) * source_rate)
                              if stream.duration and stream.time_base else None)
        # Where the stream gives no frame count (Matroska, WebM), the container's duration.
        announced_seconds = (container.duration / 1e6 if not announced and container.duration
                             else None)
        resample = frame_rate > 0 and abs(frame_rate - source_rate) > 1e-3

        def images(bar):
            nonlocal decoded, span
            start = None
            for seconds, frame in _decoded_frames(container, path):
                bar.update(1)
                decoded += 1
                image = frame.to_ndarray(format="rgb24")
                if size is not None:
                    image = resize_frame(image, size[1], size[0])
                start = seconds if start is None else start
                span = seconds - start + 1.0 / source_rate
                yield seconds - start, image

        with tqdm(total=total, desc=f"decoding {os.path.basename(path)}", unit="frame",
                  disable=not progress, leave=False) as bar:
            timed = images(bar)
            if resample:
                timed = _sample_and_hold(timed, frame_rate, source_rate)
            times, frames = [], []
            for seconds, image in timed:
                times.append(seconds)
                frames.append(image)
    if not frames:
        raise VideoError(f"{path}: no decodable frames")
    if announced and decoded < announced - 2:  # a frame or two may be dropped by the decoder
        raise VideoError(f"{path}: truncated or corrupt, only {decoded} of the {announced} "
                         "frames its header announces could be decoded")
    # Two frames' slack, as for the frame count, and 10% for containers that round.
    if announced_seconds and span < 0.9 * announced_seconds - 2.0 / source_rate:
        raise VideoError(f"{path}: truncated or corrupt, only {span:.2f} s of the "
                         f"{announced_seconds:.2f} s its container announces could be decoded")
    return Video(path=path, frames=np.stack(frames), frame_rate=frame_rate if resample
                 else source_rate, source_rate=source_rate, source_size=source_size,
                 times=np.asarray(times, np.float64))


def uniform_positions(total: int, count: int) -> np.ndarray:
    """`count` frame positions (0-based) spread uniformly over `total` frames, first and last
    included: `floor(linspace(0, total - 1, count))`, repeating positions when `total < count`
    (the whole-video sampling of the USDL/MUSDL authors' JIGSAWS loader)."""
    if total <= 0 or count <= 0:
        raise ValueError(f"uniform_positions: total={total} and count={count} must be positive")
    return np.floor(np.linspace(0, total - 1, num=count)).astype(np.int64)


def announced_frames(path: str) -> int:
    """The frame count the file's header gives for its first video stream; 0 when it gives
    none. Raises VideoError as `read_video` for a file that cannot be opened."""
    with _open(path) as container:
        return int(container.streams.video[0].frames or 0)


def _frames_at(path: str, positions: Sequence[int],
               size: Optional[Tuple[int, int]]) -> Tuple[dict, int]:
    """(position -> RGB frame resized to `size`, for the `positions` the stream has; how many
    frames the whole stream decoded to). Every frame is decoded (a corrupt stream raises
    VideoError wherever it is) but only the wanted ones are converted and kept."""
    wanted, found, count = set(int(p) for p in positions), {}, 0
    with _open(path) as container:
        for _, frame in _decoded_frames(container, path):
            if count in wanted:
                image = frame.to_ndarray(format="rgb24")
                found[count] = image if size is None else resize_frame(image, size[1], size[0])
            count += 1
    return found, count


def read_uniform_frames(path: str, count: int,
                        size: Optional[Tuple[int, int]] = None) -> Tuple[np.ndarray, int]:
    """`count` frames spread uniformly over the whole video (`uniform_positions` of its
    frames), each resized to `size` (height, width) with `resize_frame`; and the number of
    frames the video has. Only the chosen frames are held in memory, never the whole video.

    The header's frame count is used when the stream decodes to it; a header without one, or
    one a frame or two off, costs a second decoding pass (counting first).

    Raises:
      VideoError: missing or unreadable file, no video stream, a corrupt stream, no frames, or
        fewer frames than the header announces (beyond two: truncated).
    """
    announced = announced_frames(path)
    total = announced or _frames_at(path, (), None)[1]
    if not total:
        raise VideoError(f"{path}: no decodable frames")
    frames, decoded = _frames_at(path, uniform_positions(total, count), size)
    if decoded != total:
        if not decoded:
            raise VideoError(f"{path}: no decodable frames")
        if announced and decoded < announced - 2:  # as read_video: one or two may be dropped
            raise VideoError(f"{path}: truncated or corrupt, only {decoded} of the {announced} "
                             "frames its header announces could be decoded")
        total = decoded
        frames, _ = _frames_at(path, uniform_positions(total, count), size)
    return np.stack([frames[int(p)] for p in uniform_positions(total, count)]), total


def write_video(path: str, frames: np.ndarray, frame_rate: float = 25.0, crf: int = 10,
                codec: str = "libx264"):
    """Writes RGB uint8 frames `[T, H, W, 3]` as an H.264 .mp4 (near-lossless by default; a
    keyframe every 12 frames, so that seeking is exercised)."""
    import av
    from fractions import Fraction
    rate = Fraction(frame_rate).limit_denominator(1001)
    with av.open(path, mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        # 4:2:0 chroma needs even sides (171x128 frames get 4:4:4).
        even = frames.shape[1] % 2 == 0 and frames.shape[2] % 2 == 0
        stream.pix_fmt = "yuv420p" if even else "yuv444p"
        stream.options = {"crf": str(crf), "g": "12"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)

