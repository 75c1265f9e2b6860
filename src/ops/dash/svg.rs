//! Charts as inline SVG, drawn on the server: a time chart (lines over the
//! last 24 h), horizontal bars (latency percentiles per model) and a Gantt
//! chart (a paper's phases and states).
//!
//! Why hand-written: the plotting crates lay out axis text with a font
//! backend (TrueType parsing, font files or system fonts), which is most of
//! their weight; these three shapes need only rectangles, polylines and
//! `<text>` left to the browser. Styling is by presentation attributes and
//! CSS classes, never `style=""` (the page's Content-Security-Policy forbids
//! inline styles); every text is escaped.

use std::fmt::Write as _;

/// Text for SVG/HTML content or an attribute value.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A number for an SVG attribute (one decimal; finite).
fn n(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1}", v)
    } else {
        "0".into()
    }
}

/// Ticks at 1, 2 or 5 × 10^k covering 0..=max, at most about five.
pub fn nice_ticks(max: f64) -> Vec<f64> {
    if !max.is_finite() || max <= 0.0 {
        return vec![0.0, 1.0];
    }
    let rough = max / 4.0;
    let mag = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * mag);
    let mut ticks = vec![0.0];
    let mut t = step;
    while t < max + step * 0.999 && ticks.len() < 12 {
        ticks.push(t);
        t += step;
    }
    ticks
}

/// Tick text: `1.5k`, `2M`, `0.5`, `12`.
pub fn short_number(v: f64) -> String {
    let a = v.abs();
    let (x, unit) = if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    if (x - x.round()).abs() < 1e-9 {
        format!("{}{unit}", x.round() as i64)
    } else {
        format!("{:.1}{unit}", x)
    }
}

/// One line of a time chart.
pub struct Series<'a> {
    pub name: &'a str,
    /// CSS class of its stroke (`s1` … `s6`, see dash.css).
    pub class: &'a str,
    pub values: &'a [f64],
}

/// Lines over equal time buckets. `labels[i]` is the x-axis text under
/// bucket `i` (empty for none).
pub fn time_chart(title: &str, y_label: &str, labels: &[String], series: &[Series<'_>]) -> String {
    const W: f64 = 720.0;
    const H: f64 = 220.0;
    const L: f64 = 48.0;
    const R: f64 = 12.0;
    const T: f64 = 28.0;
    const B: f64 = 30.0;
    let buckets = labels.len().max(1);
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let ticks = nice_ticks(max);
    let top = ticks.last().copied().unwrap_or(1.0).max(1e-9);
    let pw = W - L - R;
    let ph = H - T - B;
    let x = |i: usize| L + pw * (i as f64 + 0.5) / buckets as f64;
    let y = |v: f64| T + ph - ph * (v / top).clamp(0.0, 1.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg"><title>{t}</title>"#,
        t = esc(title)
    );
    let _ = write!(
        s,
        r#"<text class="ctitle" x="{L}" y="16">{}</text>"#,
        esc(title)
    );
    for t in &ticks {
        let yy = n(y(*t));
        let _ = write!(
            s,
            r#"<line class="grid" x1="{L}" x2="{}" y1="{yy}" y2="{yy}"/><text class="tick" x="{}" y="{yy}" text-anchor="end" dominant-baseline="middle">{}</text>"#,
            n(W - R),
            n(L - 6.0),
            esc(&short_number(*t))
        );
    }
    let _ = write!(
        s,
        r#"<text class="tick" x="12" y="{}" transform="rotate(-90 12 {})" text-anchor="middle">{}</text>"#,
        n(T + ph / 2.0),
        n(T + ph / 2.0),
        esc(y_label)
    );
    for (i, l) in labels.iter().enumerate().filter(|(_, l)| !l.is_empty()) {
        let xx = n(x(i));
        let _ = write!(
            s,
            r#"<line class="axis" x1="{xx}" x2="{xx}" y1="{}" y2="{}"/><text class="tick" x="{xx}" y="{}" text-anchor="middle">{}</text>"#,
            n(T + ph),
            n(T + ph + 4.0),
            n(H - 10.0),
            esc(l)
        );
    }
    let _ = write!(
        s,
        r#"<line class="axis" x1="{L}" x2="{}" y1="{}" y2="{}"/>"#,
        n(W - R),
        n(T + ph),
        n(T + ph)
    );
    let mut legend_x = W - R;
    for sr in series.iter().rev() {
        let width = 14.0 + 7.0 * sr.name.chars().count() as f64;
        legend_x -= width + 10.0;
        let _ = write!(
            s,
            r#"<rect class="{c} fill" x="{}" y="8" width="10" height="10"/><text class="legend" x="{}" y="17">{}</text>"#,
            n(legend_x),
            n(legend_x + 14.0),
            esc(sr.name),
            c = esc(sr.class)
        );
        let pts: Vec<String> = sr
            .values
            .iter()
            .enumerate()
            .take(buckets)
            .map(|(i, v)| format!("{},{}", n(x(i)), n(y(if v.is_finite() { *v } else { 0.0 }))))
            .collect();
        let _ = write!(
            s,
            r#"<polyline class="{} line" fill="none" points="{}"><title>{}</title></polyline>"#,
            esc(sr.class),
            pts.join(" "),
            esc(sr.name)
        );
    }
    s.push_str("</svg>");
    s
}

/// One group of horizontal bars (a model's percentiles).
pub struct BarGroup<'a> {
    pub label: &'a str,
    /// (name, CSS class, value) per bar.
    pub bars: Vec<(&'a str, &'a str, f64)>,
}

/// Horizontal bars per group, on one linear scale; `unit` follows each
/// value's text.
pub fn bar_chart(title: &str, unit: &str, groups: &[BarGroup<'_>]) -> String {
    const W: f64 = 720.0;
    const L: f64 = 190.0;
    const R: f64 = 70.0;
    const BAR: f64 = 12.0;
    const GAP: f64 = 10.0;
    let rows: usize = groups.iter().map(|g| g.bars.len().max(1)).sum();
    let h = 36.0 + rows as f64 * (BAR + 2.0) + groups.len() as f64 * GAP + 10.0;
    let max = groups
        .iter()
        .flat_map(|g| g.bars.iter().map(|b| b.2))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let pw = W - L - R;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {W} {}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg"><title>{t}</title><text class="ctitle" x="8" y="16">{t}</text>"#,
        n(h),
        t = esc(title)
    );
    if groups.is_empty() {
        let _ = write!(s, r#"<text class="tick" x="8" y="40">no data</text>"#);
    }
    let mut yy = 30.0;
    for g in groups {
        let _ = write!(
            s,
            r#"<text class="legend" x="8" y="{}">{}</text>"#,
            n(yy + BAR),
            esc(&super::super::fit(g.label, 26))
        );
        for (name, class, v) in &g.bars {
            let w = pw * (v / max).clamp(0.0, 1.0);
            let _ = write!(
                s,
                r#"<text class="tick" x="{}" y="{}" text-anchor="end">{}</text><rect class="{} fill" x="{L}" y="{}" width="{}" height="{BAR}"><title>{} {}: {}{}</title></rect><text class="tick" x="{}" y="{}">{}{}</text>"#,
                n(L - 6.0),
                n(yy + BAR - 2.0),
                esc(name),
                esc(class),
                n(yy),
                n(w.max(1.0)),
                esc(g.label),
                esc(name),
                esc(&short_number(*v)),
                esc(unit),
                n(L + w + 4.0),
                n(yy + BAR - 2.0),
                esc(&short_number(*v)),
                esc(unit)
            );
            yy += BAR + 2.0;
        }
        yy += GAP;
    }
    s.push_str("</svg>");
    s
}

/// One bar of a Gantt chart.
pub struct Span<'a> {
    pub label: String,
    /// Indentation level of the label (phase 0, state 1, child state 2).
    pub depth: usize,
    pub start_ms: i64,
    /// None while running (drawn to `now_ms`).
    pub end_ms: Option<i64>,
    /// CSS class by outcome (`ok`, `error`, `failed`, `running`, …).
    pub class: &'a str,
    /// Hover text.
    pub detail: String,
    /// Shown beside the bar (its duration), may be empty.
    pub note: String,
}

/// Spans on one time axis, one row each, in the given order.
pub fn gantt(title: &str, spans: &[Span<'_>], now_ms: i64) -> String {
    const W: f64 = 900.0;
    const L: f64 = 230.0;
    const R: f64 = 16.0;
    const ROW: f64 = 18.0;
    let start = spans.iter().map(|s| s.start_ms).min().unwrap_or(now_ms);
    let end = spans
        .iter()
        .map(|s| s.end_ms.unwrap_or(now_ms))
        .max()
        .unwrap_or(now_ms)
        .max(start + 1);
    let total = (end - start) as f64;
    let pw = W - L - R;
    let h = 44.0 + spans.len() as f64 * ROW;
    let x = |ms: i64| L + pw * ((ms - start) as f64 / total).clamp(0.0, 1.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart gantt" viewBox="0 0 {W} {}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg"><title>{t}</title><text class="ctitle" x="8" y="16">{t}</text>"#,
        n(h),
        t = esc(title)
    );
    // Five time ticks, as offsets from the first start.
    for i in 0..=4 {
        let ms = start + (total * i as f64 / 4.0) as i64;
        let xx = n(x(ms));
        let _ = write!(
            s,
            r#"<line class="grid" x1="{xx}" x2="{xx}" y1="24" y2="{}"/><text class="tick" x="{xx}" y="{}" text-anchor="{}">+{}</text>"#,
            n(h - 14.0),
            n(h - 3.0),
            // The last label ends at its line, inside the chart.
            if i == 4 { "end" } else { "middle" },
            esc(&super::super::human_duration_ms(ms - start))
        );
    }
    for (i, sp) in spans.iter().enumerate() {
        let yy = 26.0 + i as f64 * ROW;
        let x0 = x(sp.start_ms);
        let x1 = x(sp.end_ms.unwrap_or(now_ms)).max(x0 + 2.0);
        let label = super::super::fit(&sp.label, 34usize.saturating_sub(2 * sp.depth));
        let _ = write!(
            s,
            r#"<text class="legend" x="{}" y="{}">{}</text><rect class="span {}" x="{}" y="{}" width="{}" height="{}"><title>{}</title></rect>"#,
            n(8.0 + 12.0 * sp.depth as f64),
            n(yy + ROW - 6.0),
            esc(&label),
            esc(sp.class),
            n(x0),
            n(yy + 2.0),
            n(x1 - x0),
            n(ROW - 5.0),
            esc(&sp.detail)
        );
        if !sp.note.is_empty() {
            // Right of the bar, or left of it when the bar ends near the
            // chart's edge.
            let (tx, anchor) = if x1 + 64.0 < W {
                (x1 + 4.0, "start")
            } else {
                (x0 - 4.0, "end")
            };
            let _ = write!(
                s,
                r#"<text class="tick" x="{}" y="{}" text-anchor="{anchor}">{}</text>"#,
                n(tx),
                n(yy + ROW - 6.0),
                esc(&sp.note)
            );
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_everywhere() {
        let evil = "<script>alert(1)</script>\"'&";
        let labels = vec![evil.to_string(), String::new()];
        let svg = time_chart(
            evil,
            evil,
            &labels,
            &[Series {
                name: evil,
                class: "s1\"onload=\"x",
                values: &[1.0, 2.0],
            }],
        );
        let bars = bar_chart(
            evil,
            evil,
            &[BarGroup {
                label: evil,
                bars: vec![(evil, "s1", 3.0)],
            }],
        );
        let g = gantt(
            evil,
            &[Span {
                label: evil.into(),
                depth: 0,
                start_ms: 0,
                end_ms: None,
                class: "ok",
                detail: evil.into(),
                note: evil.into(),
            }],
            10,
        );
        for out in [svg, bars, g] {
            assert!(!out.contains("<script"), "{out}");
            assert!(!out.contains("\"onload"), "{out}");
            assert!(!out.contains("style="), "{out}");
            assert!(out.starts_with("<svg") && out.ends_with("</svg>"));
        }
    }

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(nice_ticks(0.0), vec![0.0, 1.0]);
        assert_eq!(nice_ticks(7.0), vec![0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(nice_ticks(100.0), vec![0.0, 50.0, 100.0]);
        let t = nice_ticks(12_345.0);
        assert!(*t.last().unwrap() >= 12_345.0 && t.len() <= 7, "{t:?}");
        assert!(nice_ticks(f64::NAN).len() == 2);
        assert_eq!(short_number(1500.0), "1.5k");
        assert_eq!(short_number(2_000_000.0), "2M");
        assert_eq!(short_number(12.0), "12");
    }

    #[test]
    fn points_stay_inside_the_plot_whatever_the_values() {
        let labels = vec![String::new(); 3];
        let svg = time_chart(
            "t",
            "y",
            &labels,
            &[Series {
                name: "a",
                class: "s1",
                values: &[f64::INFINITY, -5.0, 1e300],
            }],
        );
        assert!(!svg.contains("inf") && !svg.contains("NaN"), "{svg}");
        let g = gantt("g", &[], 0);
        assert!(g.ends_with("</svg>"));
    }
}
