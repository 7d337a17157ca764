"""The comparison report: a contact sheet, overlaid loss curves and report.html.

Everything the page shows is embedded in it (base64 PNG), so report.html is one
file a grader can open offline, mail or archive; the PNGs are also written
beside it for slides.
"""
import base64
import html
import io

import numpy as np
from PIL import Image, ImageDraw

import utils

TILE = 192          # contact-sheet tile height, pixels
COLUMNS = 4


def contact_sheet(entries, path, tile=TILE, columns=COLUMNS):
    """entries: [(image [H, W, 3], [label lines])] in a grid, one scale for all, labels underneath."""
    scale = tile / max(image.shape[0] for image, _ in entries)
    tiles = []
    for image, lines in entries:
        picture = Image.fromarray(utils.to_uint8(image))
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        tiles.append((picture.resize(size, Image.LANCZOS), lines))
    line_height, gap = 12, 8
    label_height = line_height * max(len(lines) for _, lines in entries) + 4
    cell_width = max(picture.width for picture, _ in tiles)
    rows = -(-len(tiles) // columns)
    sheet = Image.new('RGB', (columns * (cell_width + gap) - gap if len(tiles) >= columns
                              else len(tiles) * (cell_width + gap) - gap,
                              rows * (tile + label_height + gap) - gap), 'white')
    draw = ImageDraw.Draw(sheet)
    for index, (picture, lines) in enumerate(tiles):
        x = (index % columns) * (cell_width + gap)
        y = (index // columns) * (tile + label_height + gap)
        sheet.paste(picture, (x, y))
        for number, line in enumerate(lines):
            draw.text((x + 2, y + tile + 2 + number * line_height), line, fill='black')
    return utils.atomic_write(path, lambda tmp: sheet.save(tmp, format='PNG'))


def loss_curves(histories, path):
    """Total loss relative to its start against iteration, one line per configuration, log scale.

    Relative, because each configuration minimises its own objective (a 'sum'
    total is 13 times a 'mean' one): what compares is how fast each falls.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, axis = plt.subplots(figsize=(7, 4.5), dpi=100)
    for name, history in histories.items():
        start = history[0]['total'] or 1.0
        axis.plot([row['step'] for row in history], [row['total'] / start for row in history], label=name)
    axis.set_yscale('log')
    axis.set_xlabel('iteration')
    axis.set_ylabel('total loss / loss at the start')
    axis.legend(fontsize=7)
    axis.grid(True, which='both', alpha=0.3)
    figure.tight_layout()
    utils.atomic_write(path, lambda tmp: figure.savefig(tmp, format='png'))
    plt.close(figure)
    return path


def _data_uri(image_or_path):
    if isinstance(image_or_path, str):
        with open(image_or_path, 'rb') as handle:
            data = handle.read()
    else:
        buffer = io.BytesIO()
        Image.fromarray(utils.to_uint8(image_or_path)).save(buffer, format='PNG')
        data = buffer.getvalue()
    return 'data:image/png;base64,' + base64.b64encode(data).decode('ascii')


def _cell(value):
    if isinstance(value, bool):
        return 'COPY' if value else ''
    if isinstance(value, float):
        return f'{value:.4g}' if np.isfinite(value) else '–'
    return html.escape(str(value))


def write_html(path, title, source, rows, columns, explanations, notes=(), curves=None):
    """report.html: the source, a table (one row per result, best first) with thumbnails, the curves.

    rows: dicts with 'image' (array), 'name', 'copy' (bool) and the `columns`;
    explanations: {column: one line saying what it is and which way is better}.
    """
    head = ''.join(f'<th title="{html.escape(explanations.get(c, ""))}">{html.escape(c)}</th>' for c in columns)
    body = []
    for rank, row in enumerate(rows, 1):
        flag = ' class="copy"' if row.get('copy') else ''
        cells = ''.join(f'<td>{_cell(row.get(c, ""))}</td>' for c in columns)
        body.append(f'<tr{flag}><td>{rank}</td><td><img src="{_data_uri(row["image"])}" alt="{html.escape(row["name"])}">'
                    f'</td>{cells}</tr>')
    legend = ''.join(f'<li><b>{html.escape(c)}</b>: {html.escape(text)}</li>' for c, text in explanations.items())
    notes_html = ''.join(f'<p>{html.escape(note)}</p>' for note in notes)
    curves_html = (f'<h2>Loss curves</h2><img class="curves" src="{_data_uri(curves)}" alt="loss curves">'
                   if curves else '')
    page = f'''<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; vertical-align: middle; }}
th {{ background: #f0f0f0; cursor: help; }}
td:nth-child(3) {{ text-align: left; }}
td img {{ height: 128px; image-rendering: auto; }}
tr.copy {{ background: #fde2e2; }}
.source img {{ height: 192px; }}
img.curves {{ max-width: 700px; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<div class="source"><p>source</p><img src="{_data_uri(source)}" alt="source"></div>
{notes_html}
<h2>Results, best first</h2>
<table><thead><tr><th>rank</th><th>image</th>{head}</tr></thead><tbody>
{''.join(body)}
</tbody></table>
<p>Rows in red are flagged as copies of the source and ranked last, whatever their scores.</p>
<h2>What the columns mean</h2><ul>{legend}</ul>
{curves_html}
</body></html>
'''
    def write(tmp):
        with open(tmp, 'w', encoding='utf-8') as handle:
            handle.write(page)
    return utils.atomic_write(path, write)
