"""Regenerate the quickstart media in examples/media/ (deterministic; about 900 KB).

    .venv/bin/pip install scikit-image      # sample photos; only this script needs it
    apt-get install -y espeak-ng            # speech for the audio files (a tone without it)
    .venv/bin/python examples/make_media.py

The committed files need none of these at run time. See examples/media/README.md.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tempfile
import textwrap
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent / "media"
VIDEO_SIZE = (320, 240)
VIDEO_FPS = 24
SCENE_SECONDS = 3.0  # two scenes of this length: a cut at 3.0 s
SPEECH_VIDEO = "This video shows a person and then a cup of coffee."
# A short bulletin: the weather sentence starts several seconds in, so a search for it shows where.
SPEECH_AUDIO = ("Good evening, here is the news. The city library opens a new reading room on Monday. "
                "And now the weather. The weather today is sunny and warm, with a light breeze from the sea.")
SIGN_LINES = ("BICYCLE REPAIR", "OPEN DAILY 9 - 6")

SOLAR_SYSTEM = """\
The Solar System

The Solar System is the Sun and everything bound to it by gravity: eight planets, their moons,
dwarf planets such as Pluto and Ceres, and countless asteroids and comets. Mercury, Venus, Earth
and Mars are the rocky inner planets. Beyond the asteroid belt orbit the gas giants Jupiter and
Saturn and the ice giants Uranus and Neptune.

Jupiter is the largest planet: more than eleven times as wide as Earth, with a storm called the
Great Red Spot that has raged for centuries. Saturn is famous for its bright rings of ice and rock.
Light from the Sun takes about eight minutes to reach Earth and more than four hours to reach Neptune.

Far beyond Neptune lies the Kuiper Belt, a ring of icy bodies, and further still the Oort Cloud,
the distant reservoir of long-period comets. The Voyager probes, launched in 1977, have crossed
the heliopause and now travel through interstellar space, still sending faint signals home.

Astronomers find planets around other stars too: thousands of exoplanets are known, some of them
rocky worlds in the habitable zone where liquid water could exist on the surface.

The Moon is Earth's only natural satellite. It always shows the same face to us, because it turns
once on its axis in the time it takes to orbit once around Earth, about twenty-seven days. Its
gravity raises the ocean tides, and the craters on its surface record billions of years of impacts.

Mars, the red planet, owes its colour to iron oxide dust. It has the tallest volcano in the Solar
System, Olympus Mons, and rovers such as Curiosity and Perseverance explore its ancient river beds
looking for signs that microbes once lived there.
"""

PASTA = """\
# How to cook pasta

Cooking pasta well takes a big pot, plenty of water and a little attention.

## Ingredients

- 400 g dried spaghetti
- 4 litres of water
- 2 tablespoons of coarse salt

## Method

1. Bring the water to a rolling boil and add the salt: it should taste like the sea.
2. Add the spaghetti and stir during the first minute so the strands do not stick together.
3. Boil for the time printed on the packet, usually nine to eleven minutes, and taste a strand:
   it should be al dente, tender but still firm to the bite.
4. Keep a cup of the starchy cooking water before you drain the pasta; a splash of it makes the
   tomato sauce cling to every strand.

Serve at once with grated parmesan and a few leaves of fresh basil.
"""

PDF_VOLCANOES = [
    ["Volcanoes of the World", "",
     "A volcano is an opening in the crust of a planet where molten rock, ash and gases escape.",
     "Mount Etna in Sicily is one of the most active volcanoes in Europe.",
     "Shield volcanoes such as Mauna Loa in Hawaii are built from runny basalt lava flows."],
    ["Page two: living near a volcano", "",
     "Volcanic soil is very fertile, so farmers have grown grapes and olives on the slopes",
     "of Mount Vesuvius for thousands of years, despite the eruption that buried Pompeii in 79 AD.",
     "Seismometers and satellite radar now warn of eruptions days or weeks ahead."],
]
PDF_HONEYBEES = [
    ["How honeybees make honey", "",
     "Honeybees collect nectar from flowers and store it in a special honey stomach.",
     "Back in the hive, worker bees pass the nectar between them and fan it with their wings",
     "until most of the water evaporates. The thick honey is sealed in wax cells for winter.",
     "A single hive can produce more than twenty kilograms of honey in a good summer."],
]


def main() -> int:
    from skimage import data  # the sample photos ship inside scikit-image

    if OUT.exists():
        for child in OUT.iterdir():
            if child.name != "README.md":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    for sub in ("photos", "video", "audio", "docs"):
        (OUT / sub).mkdir(parents=True, exist_ok=True)

    astronaut = Image.fromarray(data.astronaut())
    astronaut.save(OUT / "photos" / "astronaut.jpg", quality=88)
    write_exif_rotated(astronaut, OUT / "photos" / "astronaut_rotated_exif.jpg")
    Image.fromarray(data.coffee()).save(OUT / "photos" / "coffee.jpg", quality=85)
    Image.fromarray(data.chelsea()).save(OUT / "photos" / "chelsea_cat.png", optimize=True)
    write_sign(data.brick(), OUT / "photos" / "shop_sign.jpg")
    write_truncated_jpeg(astronaut, OUT / "photos" / "broken_truncated.jpg")

    write_video(data.astronaut(), data.coffee(), speech(SPEECH_VIDEO), OUT / "video" / "astronaut_then_coffee.mp4")
    write_wav(speech(SPEECH_AUDIO), OUT / "audio" / "weather_report.wav")

    (OUT / "docs" / "solar_system.txt").write_text(SOLAR_SYSTEM, encoding="utf-8")
    (OUT / "docs" / "cooking_pasta.md").write_text(PASTA, encoding="utf-8")
    (OUT / "docs" / "volcanoes.pdf").write_bytes(pdf(PDF_VOLCANOES))
    (OUT / "docs" / "honeybees.pdf").write_bytes(pdf(PDF_HONEYBEES))

    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            print(f"{p.stat().st_size:>9}  {p.relative_to(OUT)}")
    print(f"{total:>9}  total")
    return 0


def write_sign(brick: np.ndarray, path: Path) -> None:
    """A shop sign on a brick wall, photographed slightly from the side: text inside a photo, for OCR.
    The wall is scikit-image's grey brick texture tinted red; the sign is drawn, then warped."""
    from PIL import ImageDraw, ImageFont

    wall = np.stack([brick * 0.85 + 40, brick * 0.45 + 20, brick * 0.35 + 15], axis=2).clip(0, 255)
    photo = Image.fromarray(wall.astype(np.uint8)).resize((640, 480))
    sign = Image.new("RGB", (420, 170), (244, 240, 226))
    draw = ImageDraw.Draw(sign)
    draw.rectangle((4, 4, 415, 165), outline=(20, 70, 40), width=6)
    big, small = ImageFont.load_default(size=46), ImageFont.load_default(size=34)
    for text, font, y in ((SIGN_LINES[0], big, 28), (SIGN_LINES[1], small, 100)):
        width = draw.textlength(text, font=font)
        draw.text(((420 - width) / 2, y), text, fill=(20, 70, 40), font=font)
    # Seen from the left: the far (right) edge is shorter. QUAD maps the output's corners
    # (upper-left, lower-left, lower-right, upper-right) to points of the flat sign.
    warped = sign.transform((420, 170), Image.Transform.QUAD, (0, 0, 0, 170, 420, 190, 420, -20),
                            resample=Image.Resampling.BICUBIC, fillcolor=(0, 0, 0))
    mask = Image.new("L", (420, 170), 255).transform((420, 170), Image.Transform.QUAD,
                                                     (0, 0, 0, 170, 420, 190, 420, -20), fillcolor=0)
    photo.paste(warped, (110, 150), mask)
    photo.save(path, quality=88)


def write_exif_rotated(upright: Image.Image, path: Path) -> None:
    """Pixels stored turned 90 degrees, with EXIF Orientation=6 saying "turn clockwise to view",
    as a phone held sideways writes them. Decoded correctly, it shows the upright photo."""
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, quality=88, exif=exif.tobytes())


def write_truncated_jpeg(img: Image.Image, path: Path) -> None:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=88)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def speech(text: str, rate: int = 22050) -> tuple[np.ndarray, int]:
    """Mono int16 samples of `text` spoken by espeak-ng; a two-tone chime when it is missing."""
    if shutil.which("espeak-ng"):
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "speech.wav"
            # The en-us+f2 voice, a little slow with gaps between words, is the one pocketsphinx's
            # packaged model transcribes best (checked against a few voices and speeds).
            subprocess.run(["espeak-ng", "-v", "en-us+f2", "-s", "140", "-g", "8", "-w", str(wav), text],
                           check=True, timeout=60)
            with av.open(str(wav)) as container:
                stream = container.streams.audio[0]
                chunks = [f.to_ndarray().reshape(-1) for f in container.decode(stream)]
                return np.concatenate(chunks).astype(np.int16), stream.rate
    print("espeak-ng not found: using a tone instead of speech (apt-get install espeak-ng)", file=sys.stderr)
    t = np.arange(int(rate * 4.0)) / rate
    tone = 0.3 * np.sin(2 * np.pi * np.where(t < 2.0, 440.0, 660.0) * t)
    return (tone * 32767).astype(np.int16), rate


def write_wav(audio: tuple[np.ndarray, int], path: Path) -> None:
    samples, rate = audio
    with av.open(str(path), "w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def write_video(scene_a: np.ndarray, scene_b: np.ndarray, audio: tuple[np.ndarray, int], path: Path) -> None:
    """Two visually different scenes (a slow zoom on each) and a speech track, H.264 + AAC."""
    w, h = VIDEO_SIZE
    per_scene = int(SCENE_SECONDS * VIDEO_FPS)
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=VIDEO_FPS,
                               options={"preset": "medium", "crf": "28", "g": str(VIDEO_FPS), "threads": "1"})
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        video.codec_context.time_base = Fraction(1, VIDEO_FPS)
        sound = out.add_stream("aac", rate=22050, layout="mono")
        for n in range(2 * per_scene):
            scene = scene_a if n < per_scene else scene_b
            img = _zoom(scene, (n % per_scene) / per_scene, w, h)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = n
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        _encode_audio(out, sound, audio, seconds=2 * SCENE_SECONDS)


def _zoom(img: np.ndarray, progress: float, w: int, h: int) -> np.ndarray:
    """A crop of `img` with the video's aspect ratio, anchored at the top (where the astronaut's face
    is), 15% tighter by the end of the scene."""
    ih, iw = img.shape[:2]
    scale = 1.0 - 0.15 * progress
    cw = min(iw, int(ih * w / h)) * scale
    ch = cw * h / w
    x0, y0 = (iw - cw) / 2, 0.0
    crop = Image.fromarray(img).crop((int(x0), int(y0), int(x0 + cw), int(y0 + ch)))
    return np.asarray(crop.resize((w, h), Image.Resampling.BILINEAR))


def _encode_audio(out, stream, audio: tuple[np.ndarray, int], seconds: float) -> None:
    samples, rate = audio
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=stream.rate)
    src = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    src.sample_rate = rate
    resampled = np.concatenate([f.to_ndarray().reshape(-1) for f in resampler.resample(src)]
                               + [f.to_ndarray().reshape(-1) for f in resampler.resample(None)])
    total = int(seconds * stream.rate)
    track = np.zeros(total, dtype=np.float32)
    track[: min(total, len(resampled))] = resampled[:total]
    step = 1024  # AAC frame size
    for i in range(0, total, step):
        frame = av.AudioFrame.from_ndarray(track[i:i + step].reshape(1, -1), format="fltp", layout="mono")
        frame.sample_rate = stream.rate
        frame.pts = i
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


def pdf(pages: list[list[str]]) -> bytes:
    """A minimal valid PDF 1.4: one Helvetica text block per page, a correct xref table."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled in once the page tree's number is known
    tree = add(b"")
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    kids = []
    for lines in pages:
        ops = ["BT", "/F1 12 Tf", "15 TL", "72 740 Td"]
        for line in lines:
            for part in textwrap.wrap(line, 90) or [""]:
                ops.append(f"({_pdf_escape(part)}) Tj T*")
        ops.append("ET")
        content = "\n".join(ops).encode("latin-1")
        stream = add(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
        kids.append(add(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
                        b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (tree, stream, font)))
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % tree
    objects[tree - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, catalog, xref)
    return bytes(out)


def _pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


if __name__ == "__main__":
    sys.exit(main())
