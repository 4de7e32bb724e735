//! Pictures a user looks at: sample grids, toy-data scatter plots and loss curves.

use std::path::Path;

use image::RgbImage;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::data::SampleKind;

/// Lay out image samples (`[N, C, H, W]` in `[-1, 1]`) as a grid.
pub fn image_grid(samples: &[f32], kind: SampleKind) -> RgbImage {
    match kind {
        SampleKind::Image {
            channels,
            height,
            width,
        } => pocketgan_runtime::picture::image_grid(samples, (channels, height, width)),
        SampleKind::Points { .. } | SampleKind::Series { .. } => RgbImage::new(1, 1),
    }
}

/// The font of every plot's text, built into the binary (Hack: MIT and Bitstream Vera licences),
/// so that a plot needs no system font; registered with plotters once.
const FONT: &str = "sans-serif";

fn register_font() -> Result<(), String> {
    static REGISTERED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            plotters::style::register_font(
                FONT,
                FontStyle::Normal,
                epaint_default_fonts::HACK_REGULAR,
            )
            .map_err(|_| "the built-in plot font does not parse".to_string())
        })
        .clone()
}

/// Draw on a white `width x height` canvas with plotters, then hand back the picture.
fn canvas(
    (width, height): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<(), String>,
) -> Result<RgbImage, String> {
    register_font()?;
    let mut buffer = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    RgbImage::from_raw(width, height, buffer).ok_or_else(|| "a canvas of the wrong size".into())
}

fn rgb([r, g, b]: [u8; 3]) -> RGBColor {
    RGBColor(r, g, b)
}

/// 2-D points (xy pairs) over [-5, 5]^2 with labelled axes; mode centres, if given, in red.
pub fn scatter(points: &[f32], centers: &[[f32; 2]]) -> Result<RgbImage, String> {
    canvas((480, 480), |root| {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .caption("generated samples", (FONT, 18))
            .x_label_area_size(36)
            .y_label_area_size(40)
            .build_cartesian_2d(-5f32..5f32, -5f32..5f32)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("x")
            .y_desc("y")
            .label_style((FONT, 12))
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(|e| err(&e))?;
        let blue = RGBColor(30, 60, 200);
        chart
            .draw_series(
                points
                    .chunks_exact(2)
                    .filter(|p| p[0].is_finite() && p[1].is_finite())
                    .map(|p| Circle::new((p[0], p[1]), 1, blue.filled())),
            )
            .map_err(|e| err(&e))?
            .label("samples")
            .legend(move |(x, y)| Circle::new((x + 10, y), 3, blue.filled()));
        if !centers.is_empty() {
            let red = RGBColor(220, 30, 30);
            chart
                .draw_series(
                    centers
                        .iter()
                        .map(|c| Circle::new((c[0], c[1]), 4, red.filled())),
                )
                .map_err(|e| err(&e))?
                .label("mode centres")
                .legend(move |(x, y)| Circle::new((x + 10, y), 4, red.filled()));
        }
        legend(&mut chart)
    })
}

/// Two sets of 2-D points, real (red) and synthetic (blue), on axes that fit both: TimeGAN's
/// PCA and t-SNE pictures.
pub fn real_and_synthetic(
    (real, fake): &(Vec<[f32; 2]>, Vec<[f32; 2]>),
    title: &str,
    (x_desc, y_desc): (&str, &str),
) -> Result<RgbImage, String> {
    let finite = |p: &&[f32; 2]| p[0].is_finite() && p[1].is_finite();
    let (mut lo, mut hi) = ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]);
    for p in real.iter().chain(fake).filter(finite) {
        for k in 0..2 {
            (lo[k], hi[k]) = (lo[k].min(p[k]), hi[k].max(p[k]));
        }
    }
    if !(lo[0] < hi[0] && lo[1] < hi[1]) {
        (lo, hi) = ([-1.0; 2], [1.0; 2]);
    }
    let pad = |k: usize| 0.05 * (hi[k] - lo[k]);
    let (xs, ys) = (
        lo[0] - pad(0)..hi[0] + pad(0),
        lo[1] - pad(1)..hi[1] + pad(1),
    );
    canvas((480, 480), |root| {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .caption(title, (FONT, 18))
            .x_label_area_size(36)
            .y_label_area_size(40)
            .build_cartesian_2d(xs, ys)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style((FONT, 12))
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(|e| err(&e))?;
        for (set, name, colour) in [
            (real, "real", RGBColor(220, 30, 30)),
            (fake, "synthetic", RGBColor(30, 60, 200)),
        ] {
            chart
                .draw_series(
                    set.iter()
                        .filter(finite)
                        .map(move |p| Circle::new((p[0], p[1]), 2, colour.mix(0.5).filled())),
                )
                .map_err(|e| err(&e))?
                .label(name)
                .legend(move |(x, y)| Circle::new((x + 10, y), 3, colour.filled()));
        }
        legend(&mut chart)
    })
}

/// The optimal discriminator's picture of a 1-D run: the data's density, G's (estimated), D
/// and D* against x, with the numbers in the caption.
pub fn optimal_discriminator(
    a: &crate::metrics::optimal::Analysis,
    title: &str,
) -> Result<RgbImage, String> {
    canvas((900, 480), |root| {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let (lo, hi) = (
            *a.x.first().unwrap_or(&-1.0) as f32,
            *a.x.last().unwrap_or(&1.0) as f32,
        );
        let top = a
            .p_data
            .iter()
            .chain(&a.p_g)
            .copied()
            .filter(|v| v.is_finite())
            .fold(1.0f64, f64::max) as f32
            * 1.05;
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .caption(title, (FONT, 16))
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(lo..hi, 0f32..top)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("x")
            .y_desc("density; D(x) and D*(x) in [0, 1]")
            .label_style((FONT, 12))
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(|e| err(&e))?;
        let curves: [(&str, Option<&Vec<f64>>, RGBColor); 4] = [
            ("p_data", Some(&a.p_data), RGBColor(20, 20, 20)),
            ("p_g (kernel estimate)", Some(&a.p_g), RGBColor(30, 90, 220)),
            ("D(x)", a.d.as_ref(), RGBColor(220, 40, 40)),
            (
                "D*(x) = p_data / (p_data + p_g)",
                a.d.as_ref().map(|_| &a.d_star),
                RGBColor(240, 150, 20),
            ),
        ];
        for (name, values, color) in curves {
            let Some(values) = values else { continue };
            let points =
                a.x.iter()
                    .zip(values)
                    .filter(|(_, v)| v.is_finite())
                    .map(|(&x, &v)| (x as f32, v as f32));
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        legend(&mut chart)
    })
}

/// The legend of a chart's labelled series, in its upper right corner.
fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| e.to_string())
}

/// One named line of a panel.
pub struct Series<'a> {
    pub name: &'a str,
    pub values: &'a [f32],
    pub color: [u8; 3],
}

/// One chart of [`line_panels`]: lines against the step.
pub struct Panel<'a> {
    pub title: &'a str,
    pub y_label: &'a str,
    /// The step of each value.
    pub steps: &'a [u64],
    pub series: Vec<Series<'a>>,
    /// Draw each line faintly and an exponential moving average of it over it (noisy per-step
    /// values), or plainly (a few judged points).
    pub smooth: bool,
}

/// Smoothing of [`Panel::smooth`]: the weight of the newest value in the moving average.
const SMOOTHING: f32 = 0.05;

/// Panels stacked vertically under a title, each with labelled axes, ticks and a legend.
pub fn line_panels(title: &str, panels: &[Panel], path: &Path) -> Result<(), String> {
    let height = 40 + 300 * panels.len() as u32;
    let image = canvas((900, height), |root| {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let root = root.titled(title, (FONT, 20)).map_err(|e| err(&e))?;
        for (area, panel) in root.split_evenly((panels.len(), 1)).iter().zip(panels) {
            let finite = panel
                .series
                .iter()
                .flat_map(|s| s.values.iter().copied())
                .filter(|v| v.is_finite());
            let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
            let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
            let pad = ((hi - lo) * 0.05).max(1e-3);
            let first = panel.steps.first().copied().unwrap_or(0);
            let last = panel.steps.last().copied().unwrap_or(1).max(first + 1);
            let mut chart = ChartBuilder::on(area)
                .margin(10)
                .caption(panel.title, (FONT, 15))
                .x_label_area_size(36)
                .y_label_area_size(56)
                .build_cartesian_2d(first..last, (lo - pad)..(hi + pad))
                .map_err(|e| err(&e))?;
            chart
                .configure_mesh()
                .x_desc("step")
                .y_desc(panel.y_label)
                .label_style((FONT, 12))
                .light_line_style(RGBColor(238, 238, 238))
                .draw()
                .map_err(|e| err(&e))?;
            for s in &panel.series {
                let color = rgb(s.color);
                let points = || {
                    panel
                        .steps
                        .iter()
                        .copied()
                        .zip(s.values.iter().copied())
                        .filter(|(_, v)| v.is_finite())
                };
                let line = if panel.smooth {
                    chart
                        .draw_series(LineSeries::new(points(), color.mix(0.25)))
                        .map_err(|e| err(&e))?;
                    let mut average = None;
                    let smoothed = points().map(|(x, v)| {
                        let a = average.map_or(v, |a: f32| a + SMOOTHING * (v - a));
                        average = Some(a);
                        (x, a)
                    });
                    chart.draw_series(LineSeries::new(smoothed, color.stroke_width(2)))
                } else {
                    chart.draw_series(LineSeries::new(points(), color.stroke_width(2)))
                };
                line.map_err(|e| err(&e))?
                    .label(s.name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
            }
            legend(&mut chart)?;
        }
        Ok(())
    })?;
    image.save(path).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_each_sample() {
        // Four 2x2 grayscale samples: -1, -1/3, 1/3, 1.
        let s: Vec<f32> = [-1.0f32, -1.0 / 3.0, 1.0 / 3.0, 1.0]
            .iter()
            .flat_map(|&v| [v; 4])
            .collect();
        let img = image_grid(
            &s,
            SampleKind::Image {
                channels: 1,
                height: 2,
                width: 2,
            },
        );
        assert_eq!((img.width(), img.height()), (2 * 4 + 2, 2 * 4 + 2));
        assert_eq!(img.get_pixel(2, 2)[0], 0);
        assert_eq!(img.get_pixel(6, 6)[0], 255);
        assert_eq!(img.get_pixel(0, 0)[0], 40);
    }
}

#[cfg(test)]
mod plot_tests {
    use super::*;

    /// The plots draw text with the built-in font (no system font needed) and their lines land
    /// where the data says: a rising line's smoothed copy ends high on the right.
    #[test]
    fn plots_draw_with_the_built_in_font() {
        let dir = tempfile::tempdir().unwrap();
        let steps: Vec<u64> = (1..=200).collect();
        let rising: Vec<f32> = steps.iter().map(|&s| s as f32).collect();
        let file = dir.path().join("curve.png");
        line_panels(
            "run",
            &[Panel {
                title: "losses",
                y_label: "loss",
                steps: &steps,
                series: vec![Series {
                    name: "rising",
                    values: &rising,
                    color: [200, 0, 0],
                }],
                smooth: true,
            }],
            &file,
        )
        .unwrap();
        let img = image::open(&file).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (900, 340));
        // Text: dark pixels in the title strip.
        let title_ink = (0..900)
            .flat_map(|x| (0..40).map(move |y| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y)[0] < 100)
            .count();
        assert!(title_ink > 20, "no title drawn");
        // Red pixels in the top right quarter, none in the bottom right.
        let red = |x0: u32, y0: u32| {
            (x0..x0 + 200)
                .flat_map(|x| (y0..y0 + 80).map(move |y| (x, y)))
                .filter(|&(x, y)| {
                    let p = img.get_pixel(x, y);
                    p[0] > 150 && p[1] < 120 && p[2] < 120
                })
                .count()
        };
        assert!(red(650, 60) > 20 && red(650, 250) == 0);
        let scatter = scatter(&[0.0, 0.0, 2.0, 2.0], &[[0.0, 0.0]]).unwrap();
        assert_eq!(scatter.dimensions(), (480, 480));
    }
}
