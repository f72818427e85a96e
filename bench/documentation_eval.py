"""Documentation precision/recall per landmark on generated procedures (SYNTHETIC data only).

Mirrors `endoseek demo`: synthetic classes play the six HyperKvasir landmarks (upper GI and
colon), two more are look-alikes no reference shows. A reference gallery, a calibration at one
target precision (held-out photos, look-alikes included) and generated procedures of both
kinds are built from the weight-free baseline bundle; each procedure is judged against its
kind's default standard exactly as the service judges it, and every documented requirement is
checked against the landmarks the procedure really contains.

    .venv/bin/python -m bench.documentation_eval [--procedures 120] [--target-precision 0.8]
        [--reach mask|renormalise]

Runs on the code before and after issue 19 (it uses the "reach" API only when it exists), so
the two numbers come from the same photos, gallery and target precision.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections import Counter

import numpy as np

# synthetic class -> landmark it plays (as in app/cli/demo.py)
LANDMARKS = {
    "synthetic-z-line": "z-line",
    "synthetic-ulcer": "pylorus",
    "synthetic-lumen": "retroflex-stomach",
    "synthetic-dyed": "cecum",
    "synthetic-vessels": "ileum",
    "synthetic-polyp": "retroflex-rectum",
}
LOOKALIKES = ("synthetic-bleeding", "synthetic-folds")
KINDS = {
    "upper_gi": ("synthetic-z-line", "synthetic-ulcer", "synthetic-lumen"),
    "colonoscopy": ("synthetic-dyed", "synthetic-vessels", "synthetic-polyp"),
}
SEED = 7


def _photos(name: str, start: int, count: int, size: int) -> list:
    """Deterministic synthetic photos of class `name`, through a JPEG round trip as uploads."""
    from PIL import Image

    from training.synthetic import CLASS_NAMES, _image_rng, generate_image

    ci = CLASS_NAMES.index(name)
    out = []
    for i in range(start, start + count):
        buf = io.BytesIO()
        generate_image(ci, _image_rng(SEED, ci, i), size).save(buf, format="JPEG", quality=90)
        out.append(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return out


def _procedures(n: int, rng: np.random.Generator) -> list[tuple[str, list[str]]]:
    """(kind, synthetic classes of its photos): each landmark with p=0.7, 0-2 look-alikes."""
    out = []
    for i in range(n):
        kind = "upper_gi" if i % 2 == 0 else "colonoscopy"
        classes = [c for c in KINDS[kind] if rng.random() < 0.7]
        classes += list(rng.choice(LOOKALIKES, size=int(rng.integers(0, 3))))
        out.append((kind, classes))
    return out


def _predictor(gallery, calibration):
    from app.documentation import LandmarkPredictor

    return LandmarkPredictor(gallery, calibration)


def _reach_api():
    """`reach_of` after issue 19, None before (resolved once, at start)."""
    try:
        from app.documentation.reach import reach_of
    except ImportError:
        return None
    return reach_of


def _predict(predictor, vectors: np.ndarray, kind: str, standards, reach_of) -> list:
    """The service's prediction for photos of a procedure of `kind` (within reach if it exists)."""
    if reach_of is None:
        return predictor.predict(vectors)
    return predictor.predict(vectors, reach=reach_of(standards, kind))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procedures", type=int, default=120)
    parser.add_argument("--references", type=int, default=10)
    parser.add_argument("--heldout", type=int, default=10)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--target-precision", type=float, default=0.8)
    parser.add_argument(
        "--reach",
        choices=("renormalise", "mask"),
        default=None,
        help="how the procedure's reach narrows the vote (VoteConfig.reach; default: its default)",
    )
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON too")
    args = parser.parse_args()
    t0 = time.perf_counter()

    from app.documentation import (
        ExactSearch,
        ImageLabel,
        ProcedureImage,
        ReferenceGallery,
        VoteConfig,
        documentation_report,
        fit_calibration,
        load_standards,
    )
    from embedder import Embedder
    from embedder.paths import default_bundle_path

    emb = Embedder.from_bundle(default_bundle_path(), device="cpu")
    standards = load_standards()
    reach_of = _reach_api()
    print("version:", "before (whole-gallery vote)" if reach_of is None else "after (reach)")

    ref_vecs, ref_labels = [], []
    for name, label in LANDMARKS.items():
        ref_vecs.append(emb.embed(_photos(name, 0, args.references, args.size)))
        ref_labels += [label] * args.references
    gallery_vectors = np.concatenate(ref_vecs)
    q_vecs, q_labels = [], []
    for name in (*LANDMARKS, *LOOKALIKES):
        q_vecs.append(emb.embed(_photos(name, 100, args.heldout, args.size)))
        q_labels += [LANDMARKS.get(name, name)] * args.heldout
    calibration, _ = fit_calibration(
        gallery_vectors,
        ref_labels,
        np.concatenate(q_vecs),
        q_labels,
        model_id=emb.bundle_id,
        target_precision=args.target_precision,
        **({} if args.reach is None else {"vote_config": VoteConfig(reach=args.reach)}),
    )
    if reach_of is not None:
        print("reach mode:", getattr(calibration.vote, "reach", "renormalise"))
    gallery = ReferenceGallery(
        ExactSearch(np.arange(len(ref_labels)), gallery_vectors), dict(enumerate(ref_labels))
    )
    predictor = _predictor(gallery, calibration)

    rng = np.random.default_rng(SEED)
    next_photo: Counter[str] = Counter()
    counts = {lab: Counter() for lab in LANDMARKS.values()}
    complete = 0
    procs = _procedures(args.procedures, rng)
    for kind, classes in procs:
        photos = []
        for name in classes:
            photos += _photos(name, 200 + next_photo[name], 1, args.size)
            next_photo[name] += 1
        standard = standards.default_for(kind)
        present = {LANDMARKS[c] for c in classes if c in LANDMARKS}
        images = []
        if photos:
            preds = _predict(predictor, emb.embed(photos), kind, standards, reach_of)
            for i, p in enumerate(preds):
                labels = (
                    []
                    if p.label is None
                    else [ImageLabel(p.label, "predicted", p.score, emb.bundle_id)]
                )
                images.append(ProcedureImage(i, labels))
        report = documentation_report(standard, images, calibration)
        complete += report.complete
        for r in report.results:
            (label,) = [lab for lab in r.requirement.labels if lab in counts]
            c = counts[label]
            truth = label in present
            c["present"] += truth
            if r.status == "documented":
                c["tp" if truth else "fp"] += 1
            else:
                c["fn" if truth else "tn"] += 1
                c[f"{r.status}_present" if truth else f"{r.status}_absent"] += 1
    print(
        f"SYNTHETIC: {args.procedures} generated procedures, {args.references} references and "
        f"{args.heldout} held-out photos per class, target precision {args.target_precision}, "
        f"bundle {emb.bundle_id[:12]}, {time.perf_counter() - t0:.1f} s"
    )
    print("| landmark | present | documented right | documented wrong | precision | recall |")
    print("|---|---|---|---|---|---|")
    rows = {}
    tot = Counter()
    for label, c in counts.items():
        tot.update(c)
        rows[label] = _row(label, c)
    rows["all"] = _row("**all**", tot)
    print(f"complete procedures: {complete}/{len(procs)}")
    if args.json:
        print(json.dumps({"rows": rows, "complete": complete, "procedures": len(procs)}))


def _row(label: str, c: Counter) -> dict:
    doc = c["tp"] + c["fp"]
    precision = c["tp"] / doc if doc else float("nan")
    recall = c["tp"] / c["present"] if c["present"] else float("nan")
    print(f"| {label} | {c['present']} | {c['tp']} | {c['fp']} | {precision:.2f} | {recall:.2f} |")
    return {"present": c["present"], "tp": c["tp"], "fp": c["fp"], "p": precision, "r": recall}


if __name__ == "__main__":
    main()
