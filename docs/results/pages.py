"""What the generators of the pages under docs/results share: a sweep's table and figures copied beside
the page, the records of its commands, and the page's end (its figures and a link to the table)."""
import glob
import json
import os
import shutil


def copy_sweep(root, out):
    """Copies ROOT/results.csv and ROOT/figures/*.png into the page's folder (`out` without .md).
    Returns (that folder, the figures' file names)."""
    folder = os.path.splitext(out)[0]
    os.makedirs(folder, exist_ok=True)
    shutil.copy(os.path.join(root, "results.csv"), os.path.join(folder, "results.csv"))
    figures = sorted(glob.glob(os.path.join(root, "figures", "*.png")))
    for path in figures:
        shutil.copy(path, os.path.join(folder, os.path.basename(path)))
    return folder, [os.path.basename(p) for p in figures]


def records(root):
    """The sweep_*.json record of every launch.sweep command run on ROOT, oldest first."""
    out = []
    for path in sorted(glob.glob(os.path.join(root, "sweep_*.json"))):
        with open(path) as f:
            out.append(json.load(f))
    return out


def write(out, lines, folder, figures, table_text):
    """Writes the page: `lines`, every figure of `folder`, and a link to its results.csv."""
    name = os.path.basename(folder)
    lines = lines + [f"![{figure}]({name}/{figure})" for figure in figures]
    lines += ["", f"{table_text}: [{name}/results.csv]({name}/results.csv)."]
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out} and {folder}/")
