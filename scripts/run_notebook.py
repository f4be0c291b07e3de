"""Executes a notebook with nbclient in a temporary working directory and fails on the first
cell that raises (CI runs examples/quick.ipynb this way).

usage: python scripts/run_notebook.py NOTEBOOK
needs: pip install nbclient nbformat ipykernel
"""
import os
import sys
import tempfile

import nbformat
from nbclient import NotebookClient


def main() -> None:
    path = os.path.abspath(sys.argv[1])
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as work:
        NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": work}}).execute()
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stdout":
                print(out["text"].rstrip())
    print(f"{path}: every cell ran")


if __name__ == "__main__":
    main()
