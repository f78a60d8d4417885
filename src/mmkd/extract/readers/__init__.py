"""Media readers: real decoders for video files, EPIC RGB/flow JPEG folders, audio and boxes.

Every reader takes a `Clip` (the one sampling policy of `mmkd.extract.sampling`) and raises
`MediaError` when a sample's media is missing, unreadable, corrupt or too short, so the runner
can mark that modality missing and continue.
"""

from mmkd.extract.sampling import MediaError

__all__ = ["MediaError"]
