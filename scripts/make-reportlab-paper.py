#!/usr/bin/env python3
# Usage: pip install reportlab && python3 scripts/make-reportlab-paper.py
# (writes reportlab-2col.pdf in the current folder; copy it to
# tests/fixtures/papers/ and its `pdftotext` output to expected/).
# A two-column paper made with reportlab (platypus): a producer other than
# TeX and the test generator, for tests/fixtures/papers/reportlab-2col.pdf.
from reportlab.lib.pagesizes import letter
from reportlab.platypus import BaseDocTemplate, Frame, PageTemplate, Paragraph, Spacer, Table, TableStyle, FrameBreak
from reportlab.lib.styles import getSampleStyleSheet, ParagraphStyle
from reportlab.lib import colors
import random
random.seed(7)
ss = getSampleStyleSheet()
body = ParagraphStyle("b", parent=ss["Normal"], fontName="Times-Roman", fontSize=9.5, leading=11.5, alignment=4)
head = ParagraphStyle("h", parent=body, fontName="Times-Bold", fontSize=11, leading=14, spaceBefore=6)
cap = ParagraphStyle("c", parent=body, fontSize=8.5, leading=10)
title = ParagraphStyle("t", parent=body, fontName="Times-Bold", fontSize=16, leading=20, alignment=1)
words = ("model data training loss accuracy baseline method results gradient sparse attention "
         "kernel estimator variance layer encoder decoder benchmark evaluation sample robust").split()
def sent(i):
    n = random.randint(9, 16)
    w = [random.choice(words) for _ in range(n)]
    return (" ".join(w)).capitalize() + f" (s{i})."
k = [0]
def para(n):
    out = []
    for _ in range(n):
        k[0] += 1
        out.append(sent(k[0]))
    return Paragraph(" ".join(out), body)
W, H = letter
def on_page(c, doc):
    c.setFont("Times-Italic", 8)
    c.drawString(54, H - 40, "Sparse Kernels for Robust Estimation")
    c.drawRightString(W - 54, H - 40, "Working paper")
    c.drawCentredString(W / 2, 30, str(doc.page))
    if doc.page == 1:
        c.setLineWidth(0.4)
        c.line(54, 86, 120, 86)
        c.setFont("Times-Roman", 5)
        c.drawString(54, 78, "1")
        c.setFont("Times-Roman", 7.5)
        c.drawString(58, 76, "Data and code are available from the authors on request.")
doc = BaseDocTemplate("reportlab-2col.pdf", pagesize=letter, title="Sparse Kernels", author="Test")
top = Frame(54, H - 200, W - 108, 140, id="top")
colw = (W - 108 - 18) / 2
f1 = Frame(54, 96, colw, H - 300, id="l1")
f2 = Frame(54 + colw + 18, 96, colw, H - 300, id="r1")
g1 = Frame(54, 54, colw, H - 110, id="l")
g2 = Frame(54 + colw + 18, 54, colw, H - 110, id="r")
doc.addPageTemplates([PageTemplate(id="first", frames=[top, f1, f2], onPage=on_page, autoNextPageTemplate="rest"),
                      PageTemplate(id="rest", frames=[g1, g2], onPage=on_page)])
story = [Paragraph("Sparse Kernels for Robust Estimation", title), Spacer(1, 6),
         Paragraph("Ada Lind and Omar Haddad, Institute for Data Studies", ParagraphStyle("a", parent=body, alignment=1)),
         Spacer(1, 8), Paragraph("<b>Abstract.</b> " + " ".join(sent(900 + i) for i in range(4)), body), FrameBreak()]
story += [Paragraph("1 Introduction", head), para(6), para(5), Paragraph("2 Method", head), para(7)]
data = [["Method", "Accuracy", "Time (s)"], ["Baseline", "71.4", "12.8"], ["Sparse kernel", "78.9", "9.6"],
        ["Dense kernel", "77.2", "31.5"], ["Ours + prior", "80.3", "10.1"]]
t = Table(data, colWidths=[80, 60, 55])
t.setStyle(TableStyle([("FONT", (0, 0), (-1, -1), "Times-Roman", 8.5), ("FONT", (0, 0), (-1, 0), "Times-Bold", 8.5),
                       ("LINEABOVE", (0, 0), (-1, 0), 0.8, colors.black), ("LINEBELOW", (0, 0), (-1, 0), 0.4, colors.black),
                       ("LINEBELOW", (0, -1), (-1, -1), 0.8, colors.black)]))
story += [Paragraph("3 Results", head), para(4), Spacer(1, 4),
          Paragraph("Table 1: Accuracy and training time on the test split.", cap), Spacer(1, 3), t, Spacer(1, 8), para(6),
          Paragraph("Figure 1: Accuracy against the number of kernels.", cap), para(5),
          Paragraph("4 Conclusion", head), para(4),
          Paragraph("References", head)]
for i in range(1, 7):
    story.append(Paragraph(f"[{i}] A. Author and B. Writer. A study of {random.choice(words)} {random.choice(words)}. Journal of Tests, {2000+i}.", cap))
doc.build(story)
