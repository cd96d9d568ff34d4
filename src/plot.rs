//! Plots for reports, drawn with plotters into PNG or SVG. The font is embedded (DejaVu Sans,
//! `assets/`), so plots render on a machine with no fonts and no fontconfig. Every plot has a
//! title, units on both axes and a legend; time axes read as elapsed time and clock time.
//! Input is plain data: the report decides what to draw.

use crate::units::{clock_utc, duration};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

const FONT: &str = "memwarden-sans";
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const SIZE: (u32, u32) = (1000, 420);
use crate::units::{GIB, MIB};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Svg,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Svg => "svg",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot draw the plot: {message}")]
pub struct PlotError {
    pub path: std::path::PathBuf,
    pub message: String,
}

/// One named series of (x, y) points.
#[derive(Debug, Clone)]
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A chart of memory over time: stacked areas (bottom first), plain lines on top, and marks
/// (trial starts, actions) along the time axis.
#[derive(Debug, Clone, Default)]
pub struct TimeChart {
    pub title: String,
    /// Wall-clock start of the run (ns since the epoch), for clock-time labels.
    pub start_wall_ns: u64,
    /// x in seconds since the start; y in bytes.
    pub stacked: Vec<Line>,
    pub lines: Vec<Line>,
    /// Horizontal reference lines: (bytes, label).
    pub thresholds: Vec<(f64, String)>,
    /// Times (s) of trial starts, drawn as ticks along the bottom.
    pub marks: Vec<f64>,
    pub marks_label: String,
    /// y values are percentages (PSI), not bytes.
    pub percent: bool,
    /// Each point of `lines` is also drawn as a dot (sparse points: one per run).
    pub dots: bool,
    /// The y axis's unit follows this (`MiB/trial`), where y is a rate rather than a size.
    pub y_suffix: String,
}

/// Retained memory per trial with the fitted trend.
#[derive(Debug, Clone, Default)]
pub struct TrialChart {
    pub title: String,
    /// (trial ordinal, retained bytes)
    pub retained: Vec<(f64, f64)>,
    /// (trial ordinal, peak bytes)
    pub peaks: Vec<(f64, f64)>,
    /// The fitted line: from x, to x, intercept, slope (bytes per trial).
    pub fit: Option<(f64, f64, f64, f64)>,
    pub fit_label: String,
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in; failing to parse it is a build defect, not a runtime state.
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES)
            .unwrap_or_else(|_| panic!("bug: the embedded font does not parse"));
    });
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// MiB below 2 GiB, GiB above: (divisor, unit).
fn unit(max_bytes: f64) -> (f64, &'static str) {
    if max_bytes >= 2.0 * GIB {
        (GIB, "GiB")
    } else {
        (MIB, "MiB")
    }
}

/// `+5m00s 18:35:00`: elapsed, then UTC clock time.
fn time_label(start_wall_ns: u64, seconds: f64) -> String {
    let seconds = seconds.max(0.0);
    format!(
        "+{} {}",
        duration(seconds),
        clock_utc(start_wall_ns + (seconds * 1e9) as u64)
    )
}

pub fn time_chart(path: &Path, format: Format, chart: &TimeChart) -> Result<(), PlotError> {
    match format {
        Format::Png => png(path, |r| draw_time(r, chart)),
        Format::Svg => render(SVGBackend::new(path, SIZE).into_drawing_area(), path, |r| {
            draw_time(r, chart)
        }),
    }
}

pub fn trial_chart(path: &Path, format: Format, chart: &TrialChart) -> Result<(), PlotError> {
    match format {
        Format::Png => png(path, |r| draw_trials(r, chart)),
        Format::Svg => render(SVGBackend::new(path, SIZE).into_drawing_area(), path, |r| {
            draw_trials(r, chart)
        }),
    }
}

/// Draws into an RGB buffer and writes it as a PNG with the `png` crate: plotters' own PNG
/// writer goes through the `image` crate and its JPEG and BMP codecs, which memwarden never
/// uses (issue 31: a third of a minute of every cold build).
fn png(
    path: &Path,
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<(), String>,
) -> Result<(), PlotError> {
    let error = |message: String| PlotError {
        path: path.to_path_buf(),
        message,
    };
    let mut rgb = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
    render(
        BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area(),
        path,
        draw,
    )?;
    let file = std::fs::File::create(path).map_err(|e| error(e.to_string()))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), SIZE.0, SIZE.1);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // As plotters' writer had it: a filter chosen per row keeps the files small.
    encoder.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
    let mut writer = encoder.write_header().map_err(|e| error(e.to_string()))?;
    writer
        .write_image_data(&rgb)
        .map_err(|e| error(e.to_string()))?;
    writer.finish().map_err(|e| error(e.to_string()))
}

/// White background, the drawing, then the file: the same for every backend.
fn render<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    path: &Path,
    draw: impl FnOnce(&DrawingArea<DB, Shift>) -> Result<(), String>,
) -> Result<(), PlotError> {
    register_font();
    let error = |message: String| PlotError {
        path: path.to_path_buf(),
        message,
    };
    root.fill(&WHITE).map_err(|e| error(e.to_string()))?;
    draw(&root).map_err(error)?;
    root.present().map_err(|e| error(e.to_string()))
}

fn font(size: u32) -> TextStyle<'static> {
    (FONT, size).into_font().into()
}

fn draw_time<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &TimeChart,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let stacked = cumulative(&chart.stacked);
    let all = stacked
        .iter()
        .chain(&chart.lines)
        .flat_map(|l| l.points.iter());
    let x_max = all.clone().map(|p| p.0).fold(1.0, f64::max);
    let y_max = all
        .map(|p| p.1)
        .chain(chart.thresholds.iter().map(|t| t.0))
        .fold(MIB, f64::max)
        * 1.08;
    let (divisor, unit) = if chart.percent {
        (1.0, "%")
    } else {
        unit(y_max)
    };
    let y_max = if chart.percent {
        all_max_percent(chart).max(1.0) * 1.08
    } else {
        y_max
    };
    let mut c = ChartBuilder::on(root)
        .caption(&chart.title, font(20))
        .margin(12)
        .margin_right(48)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max / divisor)
        .map_err(e)?;
    let start = chart.start_wall_ns;
    c.configure_mesh()
        .x_labels(6)
        .y_labels(8)
        .x_label_formatter(&|x| time_label(start, *x))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .x_desc("elapsed and UTC clock time")
        .y_desc(format!("{unit}{}", chart.y_suffix))
        .label_style(font(13))
        .axis_desc_style(font(14))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(e)?;
    for (i, line) in stacked.iter().enumerate().rev() {
        let color = PALETTE[i % PALETTE.len()];
        // Opaque tints: translucent areas over each other mix into colours the legend lacks.
        let tint = RGBColor(
            ((u16::from(color.0) + 255) / 2) as u8,
            ((u16::from(color.1) + 255) / 2) as u8,
            ((u16::from(color.2) + 255) / 2) as u8,
        );
        let points: Vec<(f64, f64)> = line.points.iter().map(|(x, y)| (*x, y / divisor)).collect();
        c.draw_series(AreaSeries::new(points, 0.0, tint.filled()).border_style(color))
            .map_err(e)?
            .label(&line.name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], tint.filled()));
    }
    for (i, line) in chart.lines.iter().enumerate() {
        let color = PALETTE[(i + stacked.len()) % PALETTE.len()];
        let points: Vec<(f64, f64)> = line.points.iter().map(|(x, y)| (*x, y / divisor)).collect();
        if chart.dots {
            c.draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))
                .map_err(e)?;
        }
        c.draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(e)?
            .label(&line.name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 12, y)], color.stroke_width(2)));
    }
    for (i, (bytes, label)) in chart.thresholds.iter().enumerate() {
        let y = bytes / divisor;
        // The first reference line is a limit of the scale (the total), the rest are alarms.
        let color = if i == 0 && chart.thresholds.len() > 1 {
            BLACK.mix(0.45)
        } else {
            RED.mix(0.8)
        };
        c.draw_series(LineSeries::new(
            [(0.0, y), (x_max, y)],
            color.stroke_width(1),
        ))
        .map_err(e)?
        .label(label)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 12, y)], color));
    }
    if !chart.marks.is_empty() {
        // A rug along the top edge, clear of the areas.
        let top = y_max / divisor;
        let bottom = top * 0.96;
        c.draw_series(
            chart.marks.iter().map(|x| {
                PathElement::new([(*x, bottom), (*x, top)], BLACK.mix(0.7).stroke_width(1))
            }),
        )
        .map_err(e)?
        .label(&chart.marks_label)
        .legend(|(x, y)| PathElement::new([(x + 6, y - 5), (x + 6, y + 5)], BLACK.mix(0.6)));
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(font(13))
        .draw()
        .map_err(e)?;
    Ok(())
}

/// Cumulative sums for the stacked areas, on the first series' x grid.
fn cumulative(lines: &[Line]) -> Vec<Line> {
    let mut stacked: Vec<Line> = Vec::new();
    let mut base: Vec<f64> = Vec::new();
    for line in lines {
        let mut points = Vec::with_capacity(line.points.len());
        for (i, (x, y)) in line.points.iter().enumerate() {
            let below = base.get(i).copied().unwrap_or(0.0);
            points.push((*x, below + y));
        }
        base = points.iter().map(|p| p.1).collect();
        stacked.push(Line {
            name: line.name.clone(),
            points,
        });
    }
    stacked
}

fn all_max_percent(chart: &TimeChart) -> f64 {
    chart
        .lines
        .iter()
        .chain(&chart.stacked)
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .chain(chart.thresholds.iter().map(|t| t.0))
        .fold(0.0, f64::max)
}

fn draw_trials<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &TrialChart,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let all = chart.retained.iter().chain(&chart.peaks);
    let x_max = all.clone().map(|p| p.0).fold(1.0, f64::max) + 1.0;
    let y_max = all.map(|p| p.1).fold(MIB, f64::max) * 1.08;
    let (divisor, unit) = unit(y_max);
    let mut c = ChartBuilder::on(root)
        .caption(&chart.title, font(20))
        .margin(12)
        .margin_right(48)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5..x_max, 0.0..y_max / divisor)
        .map_err(e)?;
    c.configure_mesh()
        .x_labels(10)
        .y_labels(8)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .x_desc("trial (in the order the worker ran them)")
        .y_desc(unit)
        .label_style(font(13))
        .axis_desc_style(font(14))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(e)?;
    let peak_color = PALETTE[1];
    c.draw_series(
        chart
            .peaks
            .iter()
            .map(|(x, y)| Cross::new((*x, y / divisor), 4, peak_color.stroke_width(1))),
    )
    .map_err(e)?
    .label("peak during the trial")
    .legend(move |(x, y)| Cross::new((x + 6, y), 4, peak_color));
    let color = PALETTE[0];
    c.draw_series(
        chart
            .retained
            .iter()
            .map(|(x, y)| Circle::new((*x, y / divisor), 3, color.filled())),
    )
    .map_err(e)?
    .label("retained after the trial")
    .legend(move |(x, y)| Circle::new((x + 6, y), 3, color.filled()));
    if let Some((from, to, intercept, slope)) = chart.fit {
        let line = [from, to].map(|x| (x, (intercept + slope * x) / divisor));
        c.draw_series(LineSeries::new(line, RED.stroke_width(2)))
            .map_err(e)?
            .label(&chart.fit_label)
            .legend(|(x, y)| PathElement::new([(x, y), (x + 12, y)], RED.stroke_width(2)));
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(font(13))
        .draw()
        .map_err(e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_as_elapsed_and_clock_time() {
        // 2026-11-22T18:30:00Z
        let start = 1_795_372_200_000_000_000;
        assert_eq!(time_label(start, 0.0), "+0s 18:30:00");
        assert_eq!(time_label(start, 3725.0), "+1h02m 19:32:05");
        assert_eq!(unit(3.0 * GIB).1, "GiB");
        assert_eq!(unit(300.0 * MIB).1, "MiB");
    }

    #[test]
    fn png_and_svg_render_without_system_fonts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chart = TimeChart {
            title: "worker 0: memory by kind".into(),
            start_wall_ns: 1_795_372_200_000_000_000,
            stacked: vec![Line {
                name: "anonymous".into(),
                points: (0..50)
                    .map(|i| (i as f64, (100.0 + i as f64) * MIB))
                    .collect(),
            }],
            marks: vec![5.0, 10.0],
            marks_label: "trial starts".into(),
            ..TimeChart::default()
        };
        for format in [Format::Png, Format::Svg] {
            let path = dir.path().join(format!("m.{}", format.extension()));
            time_chart(&path, format, &chart).expect("draws");
            let bytes = std::fs::read(&path).expect("written");
            assert!(bytes.len() > 2000, "{format:?}: {} bytes", bytes.len());
        }
        let svg = std::fs::read_to_string(dir.path().join("m.svg")).expect("svg");
        assert!(svg.contains("worker 0: memory by kind"));
    }
}
