"""A small multilingual corpus as a user brings one: a folder mixing text, JSONL,
gzipped JSONL and Parquet files, and the documents it holds, in order."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

NOTES = "Première note — café, naïve façade.\nSecond line,  two spaces.\n\n\nAfter blank lines.\n"
POEM = "吾輩は猫である。名前はまだ無い。\nどこで生れたかとんと見当がつかぬ。\n"
JSONL = ["Привет, мир! Как дела?", "Emoji: 😀🎉 and 12345 digits.", "  leading spaces\ttab\r\nCRLF line",
         "Ελληνικά κείμενα, ένα δύο.", "it's what we've done; they'll see <|endoftext|> as plain text"]
JSONL_GZ = ["¿Dónde está la biblioteca?", "Zürich, Köln, Göteborg.", "한국어 문장입니다.", "last gz doc\n"]
PARQUET = ["نص عربي قصير", None, "Hindi: हिन्दी पाठ", "Mixed 中文 and English text.", "", "Tiếng Việt có dấu."]

# The order the folder is read in: paths sorted, part by part (a/b/... before a/notes.txt);
# a null or empty Parquet row is no document; hidden files are skipped.
DOCUMENTS = [POEM, NOTES, *JSONL, *JSONL_GZ, *(t for t in PARQUET if t)]


def write_corpus(folder: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "a" / "b").mkdir(parents=True)
    (folder / "a" / "notes.txt").write_text(NOTES, encoding="utf-8")
    (folder / "a" / "b" / "poem.txt").write_text(POEM, encoding="utf-8")
    (folder / ".hidden.txt").write_text("never read", encoding="utf-8")
    lines = [json.dumps({"id": i, "text": t}) for i, t in enumerate(JSONL)]
    (folder / "docs.jsonl").write_text("\n".join(lines[:2] + [""] + lines[2:]) + "\n", encoding="utf-8")
    with gzip.open(folder / "more.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in JSONL_GZ)
    table = pa.table({"id": list(range(len(PARQUET))), "text": PARQUET})
    pq.write_table(table, folder / "shard.parquet", row_group_size=2)  # several row groups
    return folder
