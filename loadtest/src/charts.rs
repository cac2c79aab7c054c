//! PNG charts of a report, drawn with `plotters` (bitmap backend; text
//! through `ab_glyph` with an embedded DejaVu Sans, so no system font or
//! fontconfig is needed where the tool runs):
//!
//! - `latency.png`: the latency distribution of each target and phase,
//!   latency (log scale) against percentile on the "nines" scale
//!   (0 %, 90 %, 99 %, 99.9 %, ...);
//! - `throughput.png`: completed operations per second over each phase.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::{Error, Result};
use crate::report::{Phase, PhaseReport, Report, TargetName};

/// DejaVu Sans 2.37 (Bitstream Vera licence: `assets/DejaVuSans.LICENSE`).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (1100, 650);

fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::Chart {
            chart: "font",
            message: "the embedded DejaVu Sans did not load".into(),
        })
    }
}

fn colour(target: TargetName, phase: Phase) -> RGBColor {
    match (target, phase) {
        (TargetName::Baseline, Phase::Cold | Phase::Warmup) => RGBColor(80, 80, 80),
        (TargetName::Baseline, Phase::Warm) => RGBColor(165, 165, 165),
        (TargetName::Floor, Phase::Cold | Phase::Warmup) => RGBColor(31, 119, 180),
        (TargetName::Floor, Phase::Warm) => RGBColor(130, 185, 230),
        (TargetName::KafkaFloor, Phase::Cold | Phase::Warmup) => RGBColor(44, 160, 44),
        (TargetName::KafkaFloor, Phase::Warm) => RGBColor(150, 215, 140),
        (TargetName::Portcullis, Phase::Cold | Phase::Warmup) => RGBColor(214, 39, 40),
        (TargetName::Portcullis, Phase::Warm) => RGBColor(250, 140, 60),
        (TargetName::PortcullisTelemetry, Phase::Cold | Phase::Warmup) => RGBColor(148, 103, 189),
        (TargetName::PortcullisTelemetry, Phase::Warm) => RGBColor(197, 176, 213),
    }
}

fn chart_error<E: std::fmt::Debug>(chart: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::Chart {
        chart,
        message: format!("{e:?}"),
    }
}

/// Percentile → position on the "nines" axis: 0 % → 0, 90 % → 1,
/// 99 % → 2, 99.9 % → 3 ...
pub fn nines(percentile: f64) -> f64 {
    let rest = (1.0 - percentile / 100.0).max(1e-9);
    -rest.log10()
}

/// Label of a position on the nines axis.
fn nines_label(x: f64) -> String {
    let n = x.round() as i32;
    if (x - f64::from(n)).abs() > 1e-6 {
        return String::new();
    }
    match n {
        0 => "0 %".into(),
        1 => "90 %".into(),
        2 => "99 %".into(),
        n => format!("99.{} %", "9".repeat(usize::try_from(n - 2).unwrap_or(0))),
    }
}

fn latency_label(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.1} s", us / 1e6)
    } else if us >= 10_000.0 {
        format!("{:.0} ms", us / 1e3)
    } else if us >= 1000.0 {
        format!("{:.1} ms", us / 1e3)
    } else if us >= 10.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.1} µs")
    }
}

/// One line of a chart: its legend, colour and points.
struct Series {
    name: String,
    colour: RGBColor,
    points: Vec<(f64, f64)>,
}

/// A line for every target and phase that has points.
fn series(r: &Report, points: impl Fn(&PhaseReport) -> Vec<(f64, f64)>) -> Vec<Series> {
    r.targets
        .iter()
        .flat_map(|t| {
            t.phases.iter().map(|p| Series {
                name: format!("{} {}", t.name, p.name),
                colour: colour(t.name, p.name),
                points: points(p),
            })
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

/// Lowest and highest x and y of the series (`None` without points).
fn bounds(series: &[Series]) -> Option<((f64, f64), (f64, f64))> {
    let mut pts = series.iter().flat_map(|s| s.points.iter().copied());
    let first = pts.next()?;
    Some(pts.fold(
        ((first.0, first.0), (first.1, first.1)),
        |((x0, x1), (y0, y1)), (x, y)| ((x0.min(x), x1.max(x)), (y0.min(y), y1.max(y))),
    ))
}

/// A chart on the whole of `root`, titled with the scenario and seed.
fn frame<'a, 'b>(
    root: &'a DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>,
    r: &Report,
    what: &str,
) -> ChartBuilder<'a, 'b, BitMapBackend<'b>> {
    let mut b = ChartBuilder::on(root);
    b.caption(
        format!("{} scenario: {what} (seed {})", r.scenario.as_str(), r.seed),
        (FAMILY, 24),
    )
    .margin(15)
    .x_label_area_size(50)
    .y_label_area_size(90);
    b
}

/// Draws the lines and their legend on a chart whose mesh is drawn.
fn draw_lines<'a, X, Y>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
    series: Vec<Series>,
    legend: SeriesLabelPosition,
    err: &impl Fn(DrawingAreaErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>) -> Error,
) -> Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for s in series {
        let c = s.colour;
        chart
            .draw_series(LineSeries::new(s.points, c.stroke_width(2)))
            .map_err(err)?
            .label(s.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FAMILY, 14))
        .draw()
        .map_err(err)
}

/// Draws `latency.png`.
pub fn latency(r: &Report, path: &Path) -> Result<()> {
    register_font()?;
    let err = chart_error("latency.png");
    let lines = series(r, |p| {
        p.latency_curve
            .iter()
            // The maximum (100 %) has no place on a nines axis; it is in
            // the tables.
            .filter(|c| c.percentile < 100.0 && c.latency_us > 0.0)
            .map(|c| (nines(c.percentile), c.latency_us))
            .collect()
    });
    let ((_, x_max), (y_min, y_max)) = bounds(&lines).unwrap_or(((0.0, 2.0), (1.0, 1000.0)));
    let x_max = x_max.max(2.0).ceil();

    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let mut chart = frame(&root, r, "latency distribution")
        .build_cartesian_2d(0f64..x_max, (y_min / 1.5..y_max * 1.5).log_scale())
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency")
        .x_labels(usize::try_from(x_max as i64 + 1).unwrap_or(3))
        .x_label_formatter(&|x| nines_label(*x))
        .y_labels(8)
        .y_label_formatter(&|y| latency_label(*y))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .draw()
        .map_err(&err)?;
    draw_lines(&mut chart, lines, SeriesLabelPosition::LowerRight, &err)?;
    root.present().map_err(&err)?;
    Ok(())
}

/// Operations per second in each interval of a timeline, at the
/// interval's middle. The last interval ends with the phase (`wall_s`); one
/// cut too short to mean anything is left out.
pub fn rates(t: &crate::report::Timeline, wall_s: f64) -> Vec<(f64, f64)> {
    let dt = t.interval_s;
    if dt <= 0.0 {
        return vec![];
    }
    t.completed
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let start = i as f64 * dt;
            let end = ((i + 1) as f64 * dt).min(wall_s.max(start));
            let width = end - start;
            (width >= dt * 0.25).then(|| (start + width / 2.0, *n as f64 / width))
        })
        .collect()
}

/// Draws `throughput.png`.
pub fn throughput(r: &Report, path: &Path) -> Result<()> {
    register_font()?;
    let err = chart_error("throughput.png");
    let lines = series(r, |p| rates(&p.timeline, p.wall_s));
    let ((_, x_max), (_, y_max)) = bounds(&lines).unwrap_or(((0.0, 1.0), (0.0, 1.0)));

    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let mut chart = frame(&root, r, "throughput over each phase")
        .build_cartesian_2d(0f64..x_max.max(0.1) * 1.02, 0f64..y_max.max(1.0) * 1.15)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the phase started")
        .y_desc("operations / s")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_label_formatter(&|x| format!("{x:.1}"))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .draw()
        .map_err(&err)?;
    draw_lines(&mut chart, lines, SeriesLabelPosition::UpperRight, &err)?;
    root.present().map_err(&err)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::report::tests::{sample_meta, sample_runs};

    #[test]
    fn the_nines_axis() {
        assert!((nines(0.0) - 0.0).abs() < 1e-9);
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-6);
        assert_eq!(nines_label(3.0), "99.9 %");
        assert_eq!(nines_label(1.0), "90 %");
        assert_eq!(nines_label(1.5), "");
        assert_eq!(latency_label(1500.0), "1.5 ms");
        assert_eq!(latency_label(25_000.0), "25 ms");
    }

    #[test]
    fn rates_cut_the_last_interval_at_the_end_of_the_phase() {
        let t = crate::report::Timeline {
            interval_s: 1.0,
            completed: vec![100, 100, 50, 1],
        };
        let r = rates(&t, 2.5);
        assert_eq!(r, [(0.5, 100.0), (1.5, 100.0), (2.25, 100.0)]);
    }

    #[test]
    fn both_charts_are_png_files() {
        let r = Report::build(sample_meta(), &sample_runs());
        let dir = tempfile::tempdir().unwrap();
        for (name, draw) in [
            ("latency.png", latency as fn(&Report, &Path) -> Result<()>),
            ("throughput.png", throughput),
        ] {
            let p = dir.path().join(name);
            draw(&r, &p).unwrap();
            let bytes = std::fs::read(&p).unwrap();
            assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{name}");
            assert!(bytes.len() > 10_000, "{name}: {} bytes", bytes.len());
            // To look at them: LOADTEST_CHART_DIR=/some/dir cargo test ...
            if let Some(keep) = std::env::var_os("LOADTEST_CHART_DIR") {
                std::fs::copy(&p, Path::new(&keep).join(name)).unwrap();
            }
        }
    }
}
