"""The comparison report: a contact sheet, overlaid loss curves and report.html.

Everything the page shows is embedded in it (base64 PNG), so report.html is one
file a grader can open offline, mail or archive; the PNGs are also written
beside it for slides.
"""
import base64
import html
import io
import os

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
    from matplotlib.figure import Figure  # not pyplot: the caller's backend and figures stay as they were
    figure = Figure(figsize=(7, 4.5), dpi=100)
    axis = figure.subplots()
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
        return 'yes' if value else ''
    if isinstance(value, (float, np.floating)):
        return f'{value:.4g}' if np.isfinite(value) else '–'
    return html.escape(str(value))


def _sort_key(value):
    """What a column sorts by: the number itself, or the text."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return f' data-value="{float(value):.10g}"' if np.isfinite(value) else ' data-value="inf"'
    return ''


# The table's columns after rank, image and name: (key, heading). Sweeps add status and seconds.
COLUMNS = (('verdict', 'verdict'), ('swd', 'swd'), ('swd_vs_reference', 'swd vs ref.'), ('gram', 'gram'),
           ('gram_vs_reference', 'gram vs ref.'), ('colour', 'colour'),
           ('spectral', 'spectral'), ('patch', 'patch'), ('layout', 'layout'), ('layout_limit', 'limit'),
           ('copy_layout', 'copy layout'), ('copy_share', 'copied'), ('size', 'size'), ('scale', 'scale'),
           ('status', 'status'), ('seconds', 'seconds'), ('path', 'path'))
# Click a heading to sort by it, again to reverse: a few lines, no library, no network.
SORT_SCRIPT = """
document.querySelectorAll('th[data-column]').forEach(function (heading) {
  heading.addEventListener('click', function () {
    var table = heading.closest('table'), body = table.tBodies[0], column = heading.cellIndex;
    var up = heading.dataset.order !== 'up';
    table.querySelectorAll('th').forEach(function (h) { delete h.dataset.order; });
    heading.dataset.order = up ? 'up' : 'down';
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[column], y = b.cells[column];
      var p = x.dataset.value, q = y.dataset.value;
      var order = (p !== undefined && q !== undefined) ? parseFloat(p) - parseFloat(q)
                                                       : x.textContent.localeCompare(y.textContent);
      return up ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""


def summary(rows, source_name):
    """One paragraph: how many were scored, flagged and to look at, the best and the worst."""
    counts = {verdict: [row['name'] for row in rows if row['verdict'] == verdict] for verdict in ('COPY', 'look', 'scale?')}
    ranked = [row for row in rows if row['verdict'] != 'COPY']
    parts = [f"{len(rows)} result{'s' if len(rows) != 1 else ''} scored against {source_name}"]
    words = {'COPY': 'flagged as copies of the source', 'look': 'with a layout over the limit, to look at',
             'scale?': 'with a size that does not fit the scale they are scored at'}
    for verdict, names in counts.items():
        if names:
            shown = ', '.join(names[:5]) + (f' and {len(names) - 5} more' if len(names) > 5 else '')
            parts.append(f"{len(names)} {words[verdict]} ({shown})")
    text = '; '.join(parts) + '.'
    if ranked:
        text += f" Best: {ranked[0]['name']} (swd {ranked[0]['swd']:.3g})"
        if len(ranked) > 1:
            text += f"; worst: {ranked[-1]['name']} (swd {ranked[-1]['swd']:.3g})"
        text += '.'
    return text


def results_table(rows, explanations, folder, grouped=False):
    """The sortable table's HTML: one row per result in the order given, thumbnails linking to
    the full image relative to `folder`. `grouped`: rows carry 'source' and 'rank' (a class
    sheet: ranks within each source)."""
    present = [(key, heading) for key, heading in COLUMNS
               if key in ('size', 'path') or any(row.get(key) is not None for row in rows)]
    lead = [('source', 'source')] if grouped else []
    head = ''.join(f'<th data-column title="{html.escape(explanations.get(key, ""))}">{html.escape(heading)}</th>'
                   for key, heading in present)
    body = []
    for rank, row in enumerate(rows, 1):
        rank = row['rank'] if grouped else rank
        full = row.get('path') or os.path.join(row.get('run_dir', ''), 'result.png')
        link = html.escape(os.path.relpath(full, folder))
        values = {**row, 'size': f"{row.get('width', row['image'].shape[1])}x{row.get('height', row['image'].shape[0])}",
                  'scale': f"{row.get('scale', '')} px ({row.get('scale_from', '')})" if row.get('scale') else '',
                  'path': link}
        cells = []
        for key, _ in present:
            value = values.get(key, '')
            if key == 'verdict':
                reason = html.escape(row.get('reason', ''))
                cells.append(f'<td class="verdict {html.escape(str(value))}" title="{reason}">'
                             f'{html.escape(str(value))}<br><small>{reason}</small></td>')
            else:
                cells.append(f'<td{_sort_key(value)}>{_cell(value if value is not None else "")}</td>')
        first = ''.join(f'<td class="text">{html.escape(row[key])}</td>' for key, _ in lead)
        body.append(f'<tr class="{html.escape(row["verdict"])}">{first}<td data-value="{rank}">{rank}</td>'
                    f'<td><a href="{link}"><img src="{_data_uri(row["image"])}" alt="{html.escape(row["name"])}"></a></td>'
                    f'<td class="text">{html.escape(row["name"])}</td>{"".join(cells)}</tr>')
    lead_head = ''.join(f'<th data-column>{html.escape(heading)}</th>' for _, heading in lead)
    legend = ''.join(f'<li><b>{html.escape(key)}</b>: {html.escape(explanations[key])}</li>'
                     for key, _ in lead + present if key in explanations)
    return (f'<table><thead><tr>{lead_head}<th data-column>rank</th><th>image</th><th data-column>name</th>{head}'
            f'</tr></thead><tbody>\n{"".join(body)}\n</tbody></table>'), legend


def colour_notes(rows):
    """The notes on the rows' colours, only when a row has that colour."""
    notes = []
    if any(row['verdict'] == 'COPY' for row in rows):
        notes.append('Rows in red are flagged as copies of the source and ranked last, whatever their scores.')
    if any(row['verdict'] in ('look', 'scale?') for row in rows):
        notes.append('Rows in yellow are worth a look: the reason is under the verdict.')
    return notes


def page(title, body, command):
    """A self-contained report page: the title, when and how it was made, the body, the sort script."""
    import datetime
    made = datetime.datetime.now().strftime('%Y-%m-%d %H:%M')
    return f'''<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; vertical-align: middle; }}
th {{ background: #f0f0f0; cursor: pointer; }}
th[data-order="up"]::after {{ content: " \\25B2"; }}
th[data-order="down"]::after {{ content: " \\25BC"; }}
td.text, td.verdict {{ text-align: left; }}
td.verdict small {{ color: #555; }}
td img {{ height: 128px; image-rendering: auto; }}
tr.COPY {{ background: #fde2e2; }}
tr.look, tr.scale\\? {{ background: #fff6d5; }}
.source img {{ height: 192px; }}
.sources {{ display: flex; flex-wrap: wrap; gap: 1.5em; }}
.sources .source {{ max-width: 320px; }}
img.curves {{ max-width: 700px; }}
code {{ background: #f4f4f4; padding: 2px 4px; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="made">Made {made} by <code>{html.escape(command)}</code></p>
{body}
<script>{SORT_SCRIPT}</script>
</body></html>
'''


def _write_page(path, text):
    def write(tmp):
        with open(tmp, 'w', encoding='utf-8') as handle:
            handle.write(text)
    return utils.atomic_write(path, write)


def write_html(path, title, source, rows, explanations, notes=(), curves=None, command=''):
    """report.html: a summary, the source, a sortable table (one row per result, best first) with
    thumbnails that open the full image, the curves, and what every column means.

    rows: dicts with 'image' (array), 'name', 'verdict', 'reason', the scores, and 'path' or
    'run_dir' (linked relative to the report, so the folder can move with its images).
    """
    table, legend = results_table(rows, explanations, os.path.dirname(os.path.abspath(path)))
    notes_html = ''.join(f'<p>{html.escape(note)}</p>' for note in list(notes) + colour_notes(rows))
    curves_html = (f'<h2>Loss curves</h2><img class="curves" src="{_data_uri(curves)}" alt="loss curves">'
                   if curves else '')
    source_name = title.split(' against ')[-1] if ' against ' in title else 'the source'
    body = f'''<p class="summary">{html.escape(summary(rows, source_name))}</p>
<div class="source"><p>source</p><img src="{_data_uri(source)}" alt="source"></div>
{notes_html}
<h2>Results, best first (click a heading to sort)</h2>
{table}
<h2>What the columns mean</h2><ul>{legend}</ul>
{curves_html}'''
    return _write_page(path, page(title, body, command))


def write_class_html(path, title, groups, explanations, notes=(), command=''):
    """The class sheet: per source its picture, summary and report; then one sortable table of
    every submission (source, rank within it, verdict, scores), a grading sheet to sort by name.

    groups: [(source name, source image, its report's path, rows best first)].
    """
    folder = os.path.dirname(os.path.abspath(path))
    cards = ''.join(
        f'<div class="source"><p><b>{html.escape(name)}</b>: <a href="{html.escape(os.path.relpath(report, folder))}">'
        f'its report</a></p><img src="{_data_uri(image)}" alt="{html.escape(name)}">'
        f'<p class="summary">{html.escape(summary(rows, name))}</p></div>'
        for name, image, report, rows in groups)
    every = [{**row, 'source': name, 'rank': rank} for name, _, _, rows in groups for rank, row in enumerate(rows, 1)]
    table, legend = results_table(every, explanations, folder, grouped=True)
    notes_html = ''.join(f'<p>{html.escape(note)}</p>' for note in list(notes) + colour_notes(every))
    body = f'''<p class="summary">{len(every)} submissions against {len(groups)} sources; each is scored and ranked
against its own source only (scores of different textures do not compare{'' if 'swd_vs_reference' not in every[0] else
', except the columns against the reference'}).</p>
<div class="sources">{cards}</div>
{notes_html}
<h2>Every submission (click a heading to sort: by name for a grading sheet)</h2>
{table}
<h2>What the columns mean</h2><ul>{legend}</ul>'''
    return _write_page(path, page(title, body, command))
