"""Authoring aid (not committed): percent-format .py -> clean .ipynb in chapters/."""
import sys, jupytext, nbformat
src, dst = sys.argv[1], sys.argv[2]
nb = jupytext.read(src)
nb.metadata = {
    "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}
for cell in nb.cells:
    cell.metadata.pop("lines_to_next_cell", None)
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
nbformat.validate(nb)
nbformat.write(nb, dst)
