//! The report's SVG charts: axes on round ticks, line charts with annotations, the confusion matrix
//! and importance bars. Legends are HTML above each chart so that they wrap and stay legible.

use std::fmt::Write as _;

use serval_proto::v1 as pb;

use super::{count, esc, percent, short};

pub const BLUE: &str = "#2563eb";
pub const AMBER: &str = "#f59e0b";
pub const GREEN: &str = "#059669";
pub const VIOLET: &str = "#7c3aed";
pub const ROSE: &str = "#e11d48";
pub const GREY: &str = "#94a3b8";
const BAR: &str = "#cbd5e1";

/// Chart sizes in SVG units: roomy for one version, tighter when two share the page width, so that
/// text keeps about the same size on screen.
#[derive(Clone, Copy)]
pub struct Size {
    pub width: f64,
    pub height: f64,
}

impl Size {
    pub fn for_columns(columns: usize) -> Self {
        if columns > 1 {
            Size {
                width: 300.0,
                height: 225.0,
            }
        } else {
            Size {
                width: 400.0,
                height: 270.0,
            }
        }
    }
}

/// Room left of the plot for the y axis's title, on top of its widest tick label.
const LEFT: f64 = 30.0;
const RIGHT: f64 = 14.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 42.0;

#[derive(Clone)]
pub struct Axis {
    label: &'static str,
    min: f64,
    max: f64,
    ticks: Vec<f64>,
    decimals: usize,
}

impl Axis {
    /// 0 to 1 by 0.2.
    pub fn unit(label: &'static str) -> Self {
        Axis::with_step(label, 0.0, 1.0, 0.2)
    }

    /// Epochs 1 to `n` (at least 2), on whole-number ticks.
    pub fn epochs(n: u32) -> Self {
        let max = f64::from(n.max(2));
        let step = nice_step(max - 1.0, 6.0).max(1.0).round();
        let mut axis = Axis::with_step("epoch", 0.0, max, step);
        axis.min = 1.0;
        axis.ticks.retain(|t| *t >= 1.0);
        if axis.ticks.first() != Some(&1.0) {
            axis.ticks.insert(0, 1.0);
        }
        axis
    }

    /// A range around [lo, hi] that starts and ends on round ticks (0 to 1 without finite bounds).
    pub fn fit(label: &'static str, lo: f64, hi: f64) -> Self {
        let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() {
            (lo, hi)
        } else {
            (0.0, 1.0)
        };
        if hi - lo < 1e-12 {
            let pad = (lo.abs() * 0.05).max(1e-6);
            (lo, hi) = (lo - pad, hi + pad);
        }
        let step = nice_step(hi - lo, 4.0);
        Axis::with_step(label, (lo / step).floor() * step, (hi / step).ceil() * step, step)
    }

    fn with_step(label: &'static str, min: f64, max: f64, step: f64) -> Self {
        let first = (min / step).round() as i64;
        let last = (max / step).round() as i64;
        Axis {
            label,
            min,
            max,
            ticks: (first..=last).map(|k| k as f64 * step).collect(),
            decimals: decimals(step),
        }
    }

    /// The same axis, cut to [lo, hi].
    pub fn clamped(mut self, lo: f64, hi: f64) -> Self {
        self.min = self.min.max(lo);
        self.max = self.max.min(hi);
        let (min, max) = (self.min, self.max);
        self.ticks.retain(|t| *t >= min - 1e-9 && *t <= max + 1e-9);
        self
    }

    fn span(&self) -> f64 {
        (self.max - self.min).max(1e-12)
    }

    fn format(&self, value: f64) -> String {
        let text = format!("{value:.*}", self.decimals);
        if text.starts_with('-') && text.trim_start_matches(['-', '0', '.']).is_empty() {
            text[1..].to_string()
        } else {
            text
        }
    }
}

/// 1, 2 or 5 times a power of ten, near `span / target`.
fn nice_step(span: f64, target: f64) -> f64 {
    let raw = (span / target).max(1e-12);
    let magnitude = 10f64.powf(raw.log10().floor());
    let nice = match raw / magnitude {
        f if f <= 1.0 => 1.0,
        f if f <= 2.0 => 2.0,
        f if f <= 5.0 => 5.0,
        _ => 10.0,
    };
    nice * magnitude
}

fn decimals(step: f64) -> usize {
    if step >= 1.0 {
        0
    } else {
        (-(step.log10() + 1e-9).floor()) as usize
    }
}

pub struct Series {
    label: String,
    color: &'static str,
    points: Vec<(f64, f64)>,
    dashed: bool,
    dots: bool,
}

impl Series {
    pub fn line(label: &str, color: &'static str, points: Vec<(f64, f64)>) -> Self {
        Series {
            label: label.to_string(),
            color,
            points,
            dashed: false,
            dots: false,
        }
    }

    /// A thin dashed reference line, e.g. the diagonal.
    pub fn reference(label: &str, points: Vec<(f64, f64)>) -> Self {
        Series {
            dashed: true,
            ..Series::line(label, GREY, points)
        }
    }

    pub fn dots(mut self) -> Self {
        self.dots = true;
        self
    }
}

/// Annotations drawn over (bars: under) a chart's series.
#[derive(Clone)]
pub enum Mark {
    /// A vertical dashed line, e.g. the best epoch.
    VLine { x: f64, label: String },
    /// A horizontal dotted line, e.g. a baseline.
    HLine { y: f64, label: String },
    /// A highlighted point with guides to both axes, e.g. the operating point.
    Point { x: f64, y: f64, label: String },
    /// Light bars rising from the x axis: (x from, x to, height as a share of a third of the plot,
    /// tooltip); non-empty bars are at least a pixel tall.
    Bars {
        label: String,
        bars: Vec<(f64, f64, f64, String)>,
    },
}

enum Swatch {
    Line(&'static str),
    Dash(&'static str),
    Dot(&'static str),
    Box(&'static str),
}

pub struct LineChart {
    pub kind: &'static str,
    pub index: usize,
    pub size: Size,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    pub marks: Vec<Mark>,
}

impl LineChart {
    fn left(&self) -> f64 {
        let widest = self
            .y
            .ticks
            .iter()
            .map(|t| self.y.format(*t).len())
            .max()
            .unwrap_or(1);
        LEFT + 6.4 * widest as f64
    }

    fn px(&self, x: f64) -> f64 {
        let left = self.left();
        left + (x - self.x.min) / self.x.span() * (self.size.width - left - RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        self.size.height - BOTTOM - (y - self.y.min) / self.y.span() * (self.size.height - TOP - BOTTOM)
    }

    /// The HTML legend followed by the SVG.
    pub fn render(&self) -> String {
        let Size { width, height } = self.size;
        let (x0, x1, y0, y1) = (self.left(), width - RIGHT, TOP, height - BOTTOM);
        let mut s = svg_open(self.kind, self.index, width, height);
        for &t in &self.y.ticks {
            let y = self.py(t);
            w!(
                s,
                "<line class=\"grid\" x1=\"{x0}\" x2=\"{x1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
                 <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
                x0 - 6.0,
                y + 4.0,
                self.y.format(t)
            );
        }
        for &t in &self.x.ticks {
            let x = self.px(t);
            w!(
                s,
                "<line class=\"grid\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{y0}\" y2=\"{y1}\"/>\
                 <text class=\"tick\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
                y1 + 16.0,
                self.x.format(t)
            );
        }
        w!(
            s,
            "<line class=\"axis\" x1=\"{x0}\" x2=\"{x1}\" y1=\"{y1}\" y2=\"{y1}\"/>\
             <line class=\"axis\" x1=\"{x0}\" x2=\"{x0}\" y1=\"{y0}\" y2=\"{y1}\"/>\n\
             <text class=\"axis-label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n\
             <text class=\"axis-label\" transform=\"translate(13 {:.1}) rotate(-90)\" \
             text-anchor=\"middle\">{}</text>\n",
            (x0 + x1) / 2.0,
            height - 6.0,
            self.x.label,
            (y0 + y1) / 2.0,
            self.y.label
        );
        let mut legend = Vec::new();
        let mut bars_legend = None;
        for mark in &self.marks {
            if let Mark::Bars { label, bars } = mark {
                for (from, to, share, title) in bars {
                    let (a, b) = (self.px(*from), self.px(*to));
                    let bar =
                        (share.clamp(0.0, 1.0) * (y1 - y0) / 3.0).max(if *share > 0.0 { 1.0 } else { 0.0 });
                    w!(
                        s,
                        "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bar:.1}\">\
                         <title>{}</title></rect>\n",
                        a + 1.5,
                        y1 - bar,
                        (b - a - 3.0).max(1.0),
                        esc(title)
                    );
                }
                bars_legend = Some((label.clone(), Swatch::Box(BAR)));
            }
        }
        let mut empty = true;
        for series in &self.series {
            let path = self.path(&series.points);
            if path.is_empty() {
                continue;
            }
            empty &= series.color == GREY;
            w!(
                s,
                "<path d=\"{path}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{}\"{} stroke-linejoin=\"round\"/>\n",
                series.color,
                if series.dashed { 1.2 } else { 2.2 },
                if series.dashed {
                    " stroke-dasharray=\"5 4\""
                } else {
                    ""
                }
            );
            if series.dots && series.points.len() <= 60 {
                for &(x, y) in series
                    .points
                    .iter()
                    .filter(|(x, y)| x.is_finite() && y.is_finite())
                {
                    w!(
                        s,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#fff\" stroke=\"{}\" stroke-width=\"1.6\">\
                         <title>{}: {} {}, {} {}</title></circle>\n",
                        self.px(x),
                        self.py(y),
                        series.color,
                        esc(&series.label),
                        self.x.label,
                        short(x),
                        self.y.label,
                        short(y)
                    );
                }
            }
            let swatch = if series.dashed {
                Swatch::Dash(series.color)
            } else {
                Swatch::Line(series.color)
            };
            legend.push((series.label.clone(), swatch));
        }
        legend.extend(bars_legend);
        for mark in &self.marks {
            match mark {
                Mark::VLine { x, label } if (self.x.min..=self.x.max).contains(x) => {
                    let px = self.px(*x);
                    w!(
                        s,
                        "<line x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{y0}\" y2=\"{y1}\" stroke=\"{ROSE}\" \
                         stroke-width=\"1.4\" stroke-dasharray=\"4 3\"><title>{}</title></line>\n",
                        esc(label)
                    );
                    legend.push((label.clone(), Swatch::Dash(ROSE)));
                }
                Mark::HLine { y, label } if (self.y.min..=self.y.max).contains(y) => {
                    let py = self.py(*y);
                    w!(
                        s,
                        "<line x1=\"{x0}\" x2=\"{x1}\" y1=\"{py:.1}\" y2=\"{py:.1}\" stroke=\"{GREY}\" \
                         stroke-width=\"1.2\" stroke-dasharray=\"2 3\"/>\n"
                    );
                    legend.push((label.clone(), Swatch::Dash(GREY)));
                }
                Mark::Point { x, y, label } if x.is_finite() && y.is_finite() => {
                    let (px, py) = (self.px(*x), self.py(*y));
                    w!(
                        s,
                        "<path d=\"M{x0},{py:.1}H{px:.1}V{y1}\" fill=\"none\" stroke=\"{ROSE}\" stroke-width=\"1\" \
                         stroke-dasharray=\"2 3\" opacity=\"0.7\"/>\n<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"5\" \
                         fill=\"{ROSE}\" stroke=\"#fff\" stroke-width=\"1.5\"><title>{}: {} {}, {} {}</title></circle>\n",
                        esc(label),
                        self.x.label,
                        short(*x),
                        self.y.label,
                        short(*y)
                    );
                    legend.push((label.clone(), Swatch::Dot(ROSE)));
                }
                _ => {}
            }
        }
        if empty {
            w!(
                s,
                "<text class=\"empty\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">no data</text>\n",
                (x0 + x1) / 2.0,
                (y0 + y1) / 2.0
            );
        }
        s.push_str("</svg>\n");
        legend_html(&legend) + &s
    }

    /// An SVG path through the finite points, broken where a point is missing.
    fn path(&self, points: &[(f64, f64)]) -> String {
        let mut d = String::new();
        let mut pen_down = false;
        for &(x, y) in points {
            if !(x.is_finite() && y.is_finite()) {
                pen_down = false;
                continue;
            }
            w!(
                d,
                "{}{:.1},{:.1}",
                if pen_down { "L" } else { "M" },
                self.px(x),
                self.py(y)
            );
            pen_down = true;
        }
        d
    }
}

fn svg_open(kind: &str, index: usize, width: f64, height: f64) -> String {
    format!(
        "<svg class=\"chart\" id=\"{kind}-{}\" data-chart=\"{kind}\" viewBox=\"0 0 {width} {height}\" \
         role=\"img\" aria-label=\"{kind} chart\">\n",
        index + 1
    )
}

fn legend_html(items: &[(String, Swatch)]) -> String {
    let mut s = String::from("<div class=\"legend\">");
    for (label, swatch) in items {
        let key = match swatch {
            Swatch::Line(c) => format!("<i class=\"line\" style=\"border-color:{c}\"></i>"),
            Swatch::Dash(c) => format!("<i class=\"dash\" style=\"border-color:{c}\"></i>"),
            Swatch::Dot(c) => format!("<i class=\"dot\" style=\"background:{c}\"></i>"),
            Swatch::Box(c) => format!("<i class=\"box\" style=\"background:{c}\"></i>"),
        };
        w!(s, "<span>{key}{}</span>", esc(label));
    }
    s.push_str("</div>\n");
    s
}

/// The 2×2 matrix at the stored threshold: counts and shares of all rows, tinted by share.
pub fn confusion(index: usize, size: Size, c: &pb::ConfusionMatrix) -> String {
    let (left, top) = (78.0, 46.0);
    let cw = ((size.width - left - 4.0) / 2.0).floor();
    let ch = if size.width < 400.0 { 92.0 } else { 104.0 };
    let height = top + 2.0 * ch + 4.0;
    let mut s = svg_open("confusion", index, left + 2.0 * cw + 4.0, height);
    let total = (c.true_positives + c.false_positives + c.true_negatives + c.false_negatives).max(1) as f64;
    w!(
        s,
        "<text class=\"axis-label\" x=\"{:.1}\" y=\"14\" text-anchor=\"middle\">predicted</text>\n\
         <text class=\"tick\" x=\"{:.1}\" y=\"36\" text-anchor=\"middle\">positive</text>\n\
         <text class=\"tick\" x=\"{:.1}\" y=\"36\" text-anchor=\"middle\">negative</text>\n\
         <text class=\"axis-label\" transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\">actual</text>\n\
         <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">positive</text>\n\
         <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">negative</text>\n",
        left + cw,
        left + cw / 2.0,
        left + cw * 1.5,
        top + ch,
        left - 8.0,
        top + ch / 2.0 + 4.0,
        left - 8.0,
        top + ch * 1.5 + 4.0,
    );
    let cells = [
        (0.0, 0.0, c.true_positives, "true positives", BLUE),
        (1.0, 0.0, c.false_negatives, "false negatives", ROSE),
        (0.0, 1.0, c.false_positives, "false positives", ROSE),
        (1.0, 1.0, c.true_negatives, "true negatives", BLUE),
    ];
    for (col, row, n, name, color) in cells {
        let share = n as f64 / total;
        let (x, y) = (left + col * cw, top + row * ch);
        w!(
            s,
            "<g><title>{name}: {} ({} of validation rows)</title>\
             <rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"6\" fill=\"{color}\" \
             fill-opacity=\"{:.3}\"/>\n<text class=\"cell-name\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{name}</text>\n\
             <text class=\"cell-count\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n\
             <text class=\"cell-share\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{} of rows</text></g>\n",
            count(n),
            percent(share),
            x + 3.0,
            y + 3.0,
            cw - 6.0,
            ch - 6.0,
            0.07 + 0.45 * share.sqrt(),
            x + cw / 2.0,
            y + 22.0,
            x + cw / 2.0,
            y + ch / 2.0 + 12.0,
            count(n),
            x + cw / 2.0,
            y + ch / 2.0 + 31.0,
            percent(share),
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Horizontal bars, most important first, on the shared `range`.
pub fn importance(index: usize, width: f64, rows: &[pb::FeatureImportance], range: (f64, f64)) -> String {
    const ROW: f64 = 22.0;
    const LABELS: f64 = 170.0;
    let (top, bottom) = (4.0, 4.0 + ROW * rows.len() as f64);
    let height = bottom + BOTTOM;
    let axis = Axis::fit("drop in validation ROC AUC", range.0, range.1);
    let (x0, x1) = (LABELS, width - RIGHT - 44.0);
    let px = |v: f64| x0 + (v - axis.min) / axis.span() * (x1 - x0);
    let mut s = svg_open("importance", index, width, height);
    for &t in &axis.ticks {
        let x = px(t);
        w!(
            s,
            "<line class=\"grid\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{top}\" y2=\"{bottom}\"/>\
             <text class=\"tick\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            bottom + 16.0,
            axis.format(t)
        );
    }
    w!(
        s,
        "<text class=\"axis-label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
        (x0 + x1) / 2.0,
        height - 6.0,
        axis.label
    );
    let zero = px(0.0);
    for (k, f) in rows.iter().enumerate() {
        let y = top + ROW * k as f64;
        let value = if f.importance.is_finite() {
            f.importance
        } else {
            0.0
        };
        let end = px(value);
        let name: String = if f.column.chars().count() > 24 {
            f.column.chars().take(23).chain(['…']).collect()
        } else {
            f.column.clone()
        };
        w!(
            s,
            "<g><title>{}: {}</title><text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"2\" fill=\"{}\"/>\
             <text class=\"value\" x=\"{:.1}\" y=\"{:.1}\">{}</text></g>\n",
            esc(&f.column),
            short(value),
            x0 - 8.0,
            y + ROW / 2.0 + 4.0,
            esc(&name),
            zero.min(end),
            y + 4.0,
            (end - zero).abs().max(1.0),
            ROW - 8.0,
            if value >= 0.0 { BLUE } else { GREY },
            zero.max(end) + 5.0,
            y + ROW / 2.0 + 4.0,
            short(value)
        );
    }
    w!(
        s,
        "<line class=\"axis\" x1=\"{zero:.1}\" x2=\"{zero:.1}\" y1=\"{top}\" y2=\"{bottom}\"/>\n</svg>\n"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_start_and_end_on_round_ticks() {
        let axis = Axis::fit("loss", 0.213, 0.487);
        assert_eq!(axis.ticks.first().copied(), Some(axis.min));
        assert_eq!(axis.ticks.last().copied(), Some(axis.max));
        assert!(axis.min <= 0.213 && axis.max >= 0.487);
        assert!((3..=9).contains(&axis.ticks.len()), "{:?}", axis.ticks);
        let unit = Axis::unit("x");
        let labels: Vec<String> = unit.ticks.iter().map(|t| unit.format(*t)).collect();
        assert_eq!(labels, ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        assert_eq!(Axis::epochs(10).ticks, [1.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(Axis::epochs(3).ticks, [1.0, 2.0, 3.0]);
        let tiny = Axis::fit("learning rate", 0.0, 0.001);
        assert_eq!(tiny.format(tiny.max), "0.0010");
        let flat = Axis::fit("auc", 0.9, 0.9);
        assert!(flat.min < 0.9 && flat.max > 0.9);
        assert!(Axis::fit("none", f64::NAN, f64::NAN).ticks.len() > 1);
    }

    #[test]
    fn missing_points_break_the_line() {
        let chart = LineChart {
            kind: "loss",
            index: 0,
            size: Size::for_columns(1),
            x: Axis::unit("x"),
            y: Axis::unit("y"),
            series: vec![],
            marks: vec![],
        };
        let d = chart.path(&[(0.0, 0.0), (0.5, f64::NAN), (0.6, 0.5), (1.0, 1.0)]);
        assert_eq!(d.matches('M').count(), 2, "{d}");
        assert_eq!(d.matches('L').count(), 1, "{d}");
    }
}
