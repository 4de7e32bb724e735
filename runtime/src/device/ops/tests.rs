//! The graph ops against their float definitions (within quantization error), and a graph with
//! a skip connection and a residual through the interpreter, bit-identical on every ISA.

use super::add::Add;
use super::concat::Part;
use super::instance_norm::{Affine, InstanceNorm};
use super::mul::Mul;
use super::pad::{Pad, PadMode};
use super::{Cx, OpKind};
use crate::format::{ConvGeometry, Model, Quant, Reader, Shape, TensorInfo, TensorKind};
use crate::interp::{run_graph, Input, TILE_ROWS};
use crate::kernels::Isa;
use crate::write::{encode_graph, QuantGraph, QuantNode, QuantOp, RequantParams};

/// A small deterministic generator of test values.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn i8(&mut self) -> i8 {
        self.next() as i8
    }
    fn unit(&mut self) -> f64 {
        self.next() as f64 / (1u64 << 31) as f64
    }
    fn quant(&mut self) -> Quant {
        Quant {
            scale: (0.005 + 0.05 * self.unit()) as f32,
            zero_point: (self.next() % 61) as i8 - 30,
        }
    }
}

/// `m` as `mult * 2^-shift` with `mult` below 2^31, for every value in `ms` with one shift.
fn fixed(ms: &[f64]) -> (Vec<i32>, u8) {
    let top = ms.iter().fold(0f64, |a, m| a.max(m.abs()));
    let shift = (30 - top.log2().floor() as i32).clamp(1, 62) as u8;
    let mults = ms
        .iter()
        .map(|m| (m * 2f64.powi(shift as i32)).round() as i32)
        .collect();
    (mults, shift)
}

fn cx<'s>(tile: &'s mut [i8], batch: usize) -> Cx<'s> {
    let (tile, tile_out) = tile.split_at_mut(0);
    Cx {
        isa: Isa::Scalar,
        batch,
        tile,
        tile_out,
        indices: &[],
    }
}

fn q(quant: Quant, x: f64) -> i32 {
    ((x / quant.scale as f64).round() as i32 + quant.zero_point as i32).clamp(-128, 127)
}

#[test]
fn add_and_mul_match_float_within_one_step() {
    let mut rng = Lcg(1);
    for _ in 0..50 {
        let (a, b, o) = (rng.quant(), rng.quant(), rng.quant());
        let (m, shift) = fixed(&[
            a.scale as f64 / o.scale as f64,
            b.scale as f64 / o.scale as f64,
        ]);
        let add = Add {
            zp: [a.zero_point, b.zero_point],
            mult: [m[0], m[1]],
            shift,
            zp_out: o.zero_point,
            min: -128,
            max: 127,
        };
        let pm = a.scale as f64 * b.scale as f64 / (o.scale as f64 * 16.0);
        let (m, shift) = fixed(&[pm]);
        let mul = Mul {
            zp: [a.zero_point, b.zero_point],
            mult: m[0],
            shift,
            zp_out: o.zero_point,
            min: -128,
            max: 127,
        };
        let o16 = Quant {
            scale: o.scale * 16.0,
            ..o
        };
        for _ in 0..200 {
            let (x, y) = (rng.i8(), rng.i8());
            let (fx, fy) = (a.dequantize(x) as f64, b.dequantize(y) as f64);
            assert!((add.apply(x, y) as i32 - q(o, fx + fy)).abs() <= 1);
            assert!((mul.apply(x, y) as i32 - q(o16, fx * fy)).abs() <= 1);
        }
        // In place over the first input gives the same values.
        let (xs, ys): (Vec<i8>, Vec<i8>) = (0..64).map(|_| (rng.i8(), rng.i8())).unzip();
        let mut out = vec![0; 64];
        add.run(&mut cx(&mut [], 1), &[&xs, &ys], &mut out).unwrap();
        let mut inplace = xs.clone();
        add.run(&mut cx(&mut [], 1), &[&[], &ys], &mut inplace)
            .unwrap();
        assert_eq!(out, inplace);
    }
}

#[test]
fn concat_requantizes_each_input_and_copies_equal_ones() {
    let mut rng = Lcg(2);
    let (a, b, o) = (rng.quant(), rng.quant(), rng.quant());
    let (m, shift) = fixed(&[a.scale as f64 / o.scale as f64]);
    let parts = [
        Part {
            channels: 3,
            zp: a.zero_point,
            shift,
            mult: m[0],
        },
        Part::copy(2, o.zero_point),
    ];
    let body = super::Concat::encode(o.zero_point, 4, &parts);
    let op = super::Concat::parse(
        &mut Reader {
            buf: &body,
            pos: 0,
            validate: true,
        },
        0,
    )
    .unwrap();
    let _ = b;
    let x0: Vec<i8> = (0..2 * 4 * 3).map(|_| rng.i8()).collect();
    let x1: Vec<i8> = (0..2 * 4 * 2).map(|_| rng.i8()).collect();
    let mut y = vec![0; 2 * 4 * 5];
    op.run(&mut cx(&mut [], 2), &[&x0, &x1], &mut y).unwrap();
    for p in 0..8 {
        for ch in 0..3 {
            let want = q(o, a.dequantize(x0[p * 3 + ch]) as f64);
            assert!((y[p * 5 + ch] as i32 - want).abs() <= 1);
        }
        assert_eq!(&y[p * 5 + 3..p * 5 + 5], &x1[p * 2..p * 2 + 2]);
    }
}

#[test]
fn pad_matches_its_definition() {
    let mut rng = Lcg(3);
    let (c, h, w) = (2, 4, 5);
    let x: Vec<i8> = (0..c * h * w).map(|_| rng.i8()).collect();
    for mode in [PadMode::Zero, PadMode::Reflect] {
        let pad = Pad {
            mode,
            zp: -7,
            c,
            h,
            w,
            pads: [1, 3, 2, 0],
        };
        let (ho, wo) = (h + 3, w + 3);
        let mut y = vec![0; c * ho * wo];
        pad.run(&mut cx(&mut [], 1), &[&x], &mut y).unwrap();
        for oy in 0..ho {
            for ox in 0..wo {
                let (iy, ix) = (oy as isize - 1, ox as isize - 3);
                let reflect = |i: isize, n: isize| {
                    if i < 0 {
                        -i
                    } else if i >= n {
                        2 * (n - 1) - i
                    } else {
                        i
                    }
                };
                for ch in 0..c {
                    let want = match mode {
                        PadMode::Zero
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize =>
                        {
                            -7
                        }
                        _ => {
                            let (sy, sx) = (reflect(iy, h as isize), reflect(ix, w as isize));
                            x[(sy as usize * w + sx as usize) * c + ch]
                        }
                    };
                    assert_eq!(y[(oy * wo + ox) * c + ch], want, "{mode:?} ({oy}, {ox})");
                }
            }
        }
    }
}

/// An instance normalisation's parameters for input and output quantizations.
// Each argument is one of the op's own parameters; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
fn instance_norm_params(
    c: usize,
    pixels: usize,
    i: Quant,
    o: Quant,
    eps: f64,
    gamma: &[f64],
    beta: &[f64],
    relu: bool,
) -> QuantOp {
    let affine = (0..c)
        .map(|ch| {
            let (m, gs) = fixed(&[gamma[ch] / o.scale as f64]);
            let n = pixels as f64;
            Affine {
                gm: m[0],
                gs,
                b16: (beta[ch] / o.scale as f64 * 65536.0).round() as i32,
                eps: (n * n * eps / (i.scale as f64).powi(2)).round() as u64,
            }
        })
        .collect();
    QuantOp::InstanceNorm {
        c,
        pixels,
        zp_out: o.zero_point,
        relu,
        affine,
    }
}

#[test]
fn instance_norm_matches_float_within_one_step() {
    let mut rng = Lcg(4);
    let pixels = 49;
    for round in 0..20 {
        // 40 channels: two full blocks of 16 and a partial one.
        let c = if round < 10 { 3 } else { 40 };
        let (i, o) = (
            rng.quant(),
            Quant {
                scale: 4.0 / 255.0,
                zero_point: 0,
            },
        );
        let gamma: Vec<f64> = (0..c).map(|_| 0.5 + rng.unit()).collect();
        let beta: Vec<f64> = (0..c).map(|_| rng.unit() - 0.5).collect();
        let eps = 1e-5;
        // Odd rounds with a fused ReLU.
        let relu = round % 2 == 1;
        let QuantOp::InstanceNorm { affine, zp_out, .. } =
            instance_norm_params(c, pixels, i, o, eps, &gamma, &beta, relu)
        else {
            unreachable!()
        };
        let body = InstanceNorm::encode(c, pixels, zp_out, relu, &affine);
        let op = InstanceNorm::parse(
            &mut Reader {
                buf: &body,
                pos: 0,
                validate: true,
            },
            0,
        )
        .unwrap();
        // A channel of near-constant values too (round 0), where eps matters.
        let x: Vec<i8> = (0..c * pixels)
            .map(|k| {
                if round == 0 && k % c == 0 {
                    5
                } else {
                    rng.i8()
                }
            })
            .collect();
        let mut y = x.clone();
        op.run(&mut cx(&mut [], 1), &[&[]], &mut y).unwrap();
        // Exactly the module's integer definition, one channel at a time (the op works on
        // blocks of channels; this pins its bytes, not just its closeness to the float).
        let round = |v: i64, s: u32| (v + (1 << (s - 1))) >> s;
        for (ch, a) in affine.iter().enumerate() {
            let q: Vec<i64> = (0..pixels).map(|p| x[p * c + ch] as i64).collect();
            let (n, sum) = (pixels as i64, q.iter().sum::<i64>());
            let v = (n * q.iter().map(|q| q * q).sum::<i64>() - sum * sum) as u64 + a.eps;
            let r = super::instance_norm::isqrt(v) as i64;
            for (p, q) in q.iter().enumerate() {
                let z = round((n * q - sum) * ((1i64 << 46) / r), 30);
                let y16 = round(z * a.gm as i64, a.gs as u32) + a.b16 as i64;
                let min = if relu { zp_out as i64 } else { -128 };
                let want = (round(y16, 16) + zp_out as i64).clamp(min, 127);
                assert_eq!(y[p * c + ch] as i64, want, "channel {ch} pixel {p}");
            }
        }
        for ch in 0..c {
            let v: Vec<f64> = (0..pixels)
                .map(|p| i.dequantize(x[p * c + ch]) as f64)
                .collect();
            let mean = v.iter().sum::<f64>() / pixels as f64;
            let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / pixels as f64;
            for p in 0..pixels {
                let norm = gamma[ch] * (v[p] - mean) / (var + eps).sqrt() + beta[ch];
                let want = q(o, if relu { norm.max(0.0) } else { norm });
                assert!(
                    (y[p * c + ch] as i32 - want).abs() <= 1,
                    "channel {ch} pixel {p}: {} vs {want}",
                    y[p * c + ch]
                );
            }
        }
    }
}

#[test]
fn pixel_norm_matches_float_within_one_step() {
    use super::pixel_norm::PixelNorm;
    let mut rng = Lcg(9);
    for round in 0..20 {
        let (c, pixels) = match round {
            0..=9 => (3, 16),
            10..=14 => (64, 4),
            // ProGAN's 64 px layers: 16 channels, many pixels.
            _ => (16, 257),
        };
        let i = rng.quant();
        // The normalised values lie within sqrt(c).
        let top = (c as f64).sqrt();
        let o = Quant {
            scale: (2.0 * top / 255.0) as f32,
            zero_point: 0,
        };
        let eps = if round % 2 == 0 { 1e-8 } else { 0.05 };
        let (m, shift) = fixed(&[top / o.scale as f64]);
        let op = PixelNorm {
            c,
            pixels,
            zp_in: i.zero_point,
            zp_out: o.zero_point,
            m: m[0],
            shift,
            eps: (c as f64 * eps / (i.scale as f64).powi(2)).round() as u64,
        };
        let body = op.encode().unwrap();
        let parsed = PixelNorm::parse(
            &mut Reader {
                buf: &body,
                pos: 0,
                validate: true,
            },
            0,
        )
        .unwrap();
        assert_eq!(parsed, op);
        // A pixel at the zero point (round 0): all zeros, whatever eps.
        let x: Vec<i8> = (0..c * pixels)
            .map(|k| {
                if round == 0 && k < c {
                    i.zero_point
                } else {
                    rng.i8()
                }
            })
            .collect();
        let mut y = x.clone();
        op.run(&mut cx(&mut [], 1), &[&[]], &mut y).unwrap();
        // Every kernel family (AVX-512's compiled path included) writes the same bytes.
        for isa in Isa::available() {
            let mut other = x.clone();
            let mut c = cx(&mut [], 1);
            c.isa = isa;
            op.run(&mut c, &[&[]], &mut other).unwrap();
            assert_eq!(other, y, "round {round}: {isa:?}");
        }
        for p in 0..pixels {
            let v: Vec<f64> = (0..c)
                .map(|ch| i.dequantize(x[p * c + ch]) as f64)
                .collect();
            let ms = v.iter().map(|a| a * a).sum::<f64>() / c as f64;
            for ch in 0..c {
                let want = q(o, v[ch] / (ms + eps).sqrt());
                assert!(
                    (y[p * c + ch] as i32 - want).abs() <= 1,
                    "round {round} pixel {p} channel {ch}: {} vs {want}",
                    y[p * c + ch]
                );
            }
        }
    }
}

#[test]
fn isqrt_is_the_floor_square_root() {
    for v in [
        0u64,
        1,
        2,
        3,
        4,
        15,
        16,
        17,
        1 << 40,
        (1 << 62) + 12345,
        u64::MAX >> 1,
        u64::MAX,
    ]
    .into_iter()
    // Every small value, and every power of two with its neighbours (where the first digit
    // changes).
    .chain(0..70_000)
    .chain((0..64).flat_map(|k| {
        let p = 1u64 << k;
        [p - 1, p, p.saturating_add(1)]
    }))
    .chain((1..=u32::MAX as u64).step_by(7_919_993).map(|r| r * r - 1))
    {
        let r = super::instance_norm::isqrt(v);
        assert!(
            r * r <= v && (r + 1) as u128 * (r + 1) as u128 > v as u128,
            "{v}"
        );
    }
}

/// Image in `[3, 8, 8]` -> reflect pad 1 -> 3x3 conv to 4 -> instance norm -> ReLU lookup ->
/// concat with the (requantized) input -> 1x1 conv to 3 -> add the input -> out: a skip
/// connection, a residual and every new op, as a graph.
fn skip_residual_graph(rng: &mut Lcg) -> QuantGraph {
    let img = |c, quant| TensorInfo {
        shape: Shape::Image { c, h: 8, w: 8 },
        quant,
        kind: TensorKind::Int8,
    };
    let qs: Vec<Quant> = (0..8).map(|_| rng.quant()).collect();
    let mut tensors = vec![img(3, qs[0])];
    tensors.push(TensorInfo {
        shape: Shape::Image { c: 3, h: 10, w: 10 },
        ..tensors[0]
    });
    let conv =
        |rng: &mut Lcg, g: ConvGeometry, zp_in: i8, zp_out: i8, relu: bool| QuantOp::Conv2d {
            geometry: g,
            zp_in,
            requant: RequantParams {
                bias: (0..g.cout)
                    .map(|_| (rng.next() % 2001) as i32 - 1000)
                    .collect(),
                mult: (0..g.cout)
                    .map(|_| (1 << 30) + (rng.next() >> 2) as i32)
                    .collect(),
                shift: (0..g.cout).map(|_| 38).collect(),
                zp_out,
                min: if relu { zp_out } else { -128 },
                max: 127,
            },
            weights: (0..g.cin * g.cout * g.kh * g.kw)
                .map(|_| ((rng.next() % 255) as i32 - 127) as i8)
                .collect(),
        };
    let geometry = |cin, cout, hw, k, pad| ConvGeometry {
        cin,
        cout,
        h: hw,
        w: hw,
        kh: k,
        kw: k,
        stride: 1,
        pad,
        out_pad: 0,
    };
    tensors.push(img(4, qs[1])); // 2: conv
    tensors.push(img(4, qs[2])); // 3: instance norm
    tensors.push(img(4, qs[3])); // 4: relu
    tensors.push(img(7, qs[3])); // 5: concat, at the relu's quantization
    tensors.push(img(3, qs[4])); // 6: 1x1 conv
    tensors.push(img(3, qs[5])); // 7: add
    let mut table = [0u8; 256];
    for (k, t) in table.iter_mut().enumerate() {
        *t = (k as u8 as i8).max(qs[3].zero_point) as u8;
    }
    let (m, shift) = fixed(&[qs[0].scale as f64 / qs[3].scale as f64]);
    let (am, ashift) = fixed(&[
        qs[4].scale as f64 / qs[5].scale as f64,
        qs[0].scale as f64 / qs[5].scale as f64,
    ]);
    let nodes = vec![
        (
            QuantOp::Pad(Pad {
                mode: PadMode::Reflect,
                zp: qs[0].zero_point,
                c: 3,
                h: 8,
                w: 8,
                pads: [1; 4],
            }),
            vec![0],
            1,
        ),
        (
            conv(
                rng,
                geometry(3, 4, 10, 3, 0),
                qs[0].zero_point,
                qs[1].zero_point,
                false,
            ),
            vec![1],
            2,
        ),
        (
            instance_norm_params(
                4,
                64,
                qs[1],
                qs[2],
                1e-5,
                &[1.0, 0.5, 2.0, 1.0],
                &[0.0, 0.1, -0.2, 0.3],
                false,
            ),
            vec![2],
            3,
        ),
        (QuantOp::Lut { table }, vec![3], 4),
        (
            QuantOp::Concat {
                zp_out: qs[3].zero_point,
                pixels: 64,
                parts: vec![
                    Part {
                        channels: 3,
                        zp: qs[0].zero_point,
                        shift,
                        mult: m[0],
                    },
                    Part::copy(4, qs[3].zero_point),
                ],
            },
            vec![0, 4],
            5,
        ),
        (
            conv(
                rng,
                geometry(7, 3, 8, 1, 0),
                qs[3].zero_point,
                qs[4].zero_point,
                false,
            ),
            vec![5],
            6,
        ),
        (
            QuantOp::Add(Add {
                zp: [qs[4].zero_point, qs[0].zero_point],
                mult: [am[0], am[1]],
                shift: ashift,
                zp_out: qs[5].zero_point,
                min: -128,
                max: 127,
            }),
            vec![6, 0],
            7,
        ),
    ];
    // The lookup maps the instance norm's scale onto the relu's: in this integer test both are
    // just codes.
    QuantGraph {
        tensors,
        inputs: vec![0],
        outputs: vec![7],
        nodes: nodes
            .into_iter()
            .map(|(op, inputs, output)| QuantNode { op, inputs, output })
            .collect(),
        metadata: "{}".into(),
    }
}

#[test]
fn skip_and_residual_graph_is_bit_identical_on_every_isa() {
    let mut rng = Lcg(5);
    let graph = skip_residual_graph(&mut rng);
    let bytes = encode_graph(&graph).expect("encodes");
    let model = Model::parse(&bytes).expect("parses");
    // The input stays alive to the end (read by the concat and the add), so the plan holds it
    // beside the largest pair; the add runs in place over the 1x1 conv's output.
    assert!(model.plan.offset(6) == model.plan.offset(7));
    for batch in [1, 3] {
        let x: Vec<i8> = (0..batch * 3 * 64).map(|_| rng.i8()).collect();
        let mut reference = None;
        for isa in Isa::available() {
            let mut arena = vec![0u8; model.arena_len(batch)];
            let mut y = vec![0i8; batch * 3 * 64];
            run_graph(
                &model,
                isa,
                batch,
                &[Input::Int8(&x)],
                &mut arena,
                &mut [&mut y],
                |_, _, _, _| {},
            )
            .unwrap();
            match &reference {
                None => reference = Some(y),
                Some(r) => assert_eq!(&y, r, "isa {} batch {batch}", isa.name()),
            }
        }
        // A batch's samples are independent: sample 0 alone gives sample 0's output.
        if batch == 3 {
            let mut arena = vec![0u8; model.arena_len(1)];
            let mut y = vec![0i8; 3 * 64];
            run_graph(
                &model,
                Isa::Scalar,
                1,
                &[Input::Int8(&x[..192])],
                &mut arena,
                &mut [&mut y],
                |_, _, _, _| {},
            )
            .unwrap();
            assert_eq!(&y[..], &reference.unwrap()[..192]);
        }
    }
    let _ = TILE_ROWS;
}

#[test]
fn graph_errors_are_typed() {
    use crate::format::FormatError;
    use crate::write::EncodeError;
    let graph = skip_residual_graph(&mut Lcg(6));
    let invalid = |g: &QuantGraph| match encode_graph(g) {
        Err(EncodeError::Invalid(e)) => e,
        other => panic!("expected a format error, got {other:?}"),
    };
    // A cycle: the pad reads the add's output, written later.
    let mut g = graph.clone();
    g.nodes[0].inputs = vec![7];
    assert!(matches!(invalid(&g), FormatError::Op { index: 0, .. }));
    // A dangling tensor: read but never written.
    let mut g = graph.clone();
    g.tensors.push(g.tensors[0]);
    g.nodes[6].inputs[1] = 8;
    assert!(matches!(invalid(&g), FormatError::Op { index: 6, .. }));
    // The wrong number of inputs.
    let mut g = graph.clone();
    g.nodes[6].inputs.pop();
    assert!(matches!(invalid(&g), FormatError::Op { index: 6, .. }));
    // Mismatched shapes on Add (the padded image) and on Concat (heights differ).
    let mut g = graph.clone();
    g.nodes[6].inputs[1] = 1;
    let mut g2 = graph.clone();
    g2.nodes[4].inputs[0] = 1;
    for e in [invalid(&g), invalid(&g2)] {
        assert!(
            matches!(e, FormatError::Op { .. } | FormatError::Shape { .. }),
            "{e:?}"
        );
    }
    // An arena too small is a run error, not an overrun.
    let bytes = encode_graph(&graph).unwrap();
    let model = Model::parse(&bytes).unwrap();
    let mut arena = vec![0u8; model.arena_len(1) - 1];
    let x = vec![0i8; 192];
    let mut y = vec![0i8; 192];
    let err = run_graph(
        &model,
        Isa::Scalar,
        1,
        &[Input::Int8(&x)],
        &mut arena,
        &mut [&mut y],
        |_, _, _, _| {},
    );
    assert!(matches!(err, Err(crate::interp::RunError::Arena { .. })));
}

/// A text's token ids `[T]` -> `Embed` -> a Linear over the `T * dim` rows: the text encoder of
/// a StackGAN, as a graph whose outputs are the rows and the Linear's.
fn text_encoder_graph(rng: &mut Lcg, vocabulary: usize, slots: usize, dim: usize) -> QuantGraph {
    let (k, n) = (slots * dim, 6);
    let rows = Quant {
        zero_point: 0,
        ..rng.quant()
    };
    let tensors = vec![
        TensorInfo {
            shape: Shape::Flat(slots),
            quant: Quant::UNIT,
            kind: TensorKind::Index {
                classes: vocabulary,
            },
        },
        TensorInfo {
            shape: Shape::Flat(k),
            quant: rows,
            kind: TensorKind::Int8,
        },
        TensorInfo {
            shape: Shape::Flat(n),
            quant: rng.quant(),
            kind: TensorKind::Int8,
        },
    ];
    let table = (0..vocabulary * dim).map(|_| rng.i8()).collect();
    let linear = QuantOp::Linear {
        k,
        n,
        zp_in: 0,
        requant: RequantParams {
            bias: (0..n).map(|_| (rng.next() % 2001) as i32 - 1000).collect(),
            mult: (0..n)
                .map(|_| (1 << 30) + (rng.next() >> 2) as i32)
                .collect(),
            shift: vec![40; n],
            zp_out: tensors[2].quant.zero_point,
            min: -128,
            max: 127,
        },
        weights: (0..k * n).map(|_| rng.i8().max(-127)).collect(),
    };
    QuantGraph {
        tensors,
        inputs: vec![0],
        outputs: vec![1, 2],
        nodes: vec![
            QuantNode {
                op: QuantOp::Embed {
                    classes: vocabulary,
                    dim,
                    table,
                },
                inputs: vec![0],
                output: 1,
            },
            QuantNode {
                op: linear,
                inputs: vec![1],
                output: 2,
            },
        ],
        metadata: "{}".into(),
    }
}

/// `Embed` of `T` tokens: each sample's `T` rows in order, exactly (the int8 copy of the float
/// `Gather` + flatten, whose float definition is `FloatOp::Embed`), through a Linear, the same
/// bytes on every ISA and whatever the batch; ids out of range and an index input of no slots
/// are errors, not panics.
#[test]
fn embed_of_t_tokens_copies_their_rows_in_order_on_every_isa() {
    let mut rng = Lcg(10);
    let (vocabulary, slots, dim) = (11, 5, 3);
    let graph = text_encoder_graph(&mut rng, vocabulary, slots, dim);
    let QuantOp::Embed { table, .. } = &graph.nodes[0].op else {
        unreachable!()
    };
    let table = table.clone();
    let bytes = encode_graph(&graph).expect("encodes");
    let model = Model::parse(&bytes).expect("parses");
    assert_eq!((model.classes(), model.slots()), (vocabulary, slots));
    let batch = 3;
    let ids: Vec<u32> = (0..batch * slots)
        .map(|_| rng.next() % vocabulary as u32)
        .collect();
    let run = |isa: Isa, batch: usize, ids: &[u32]| {
        let mut arena = vec![0u8; model.arena_len(batch)];
        let (mut rows, mut y) = (vec![0i8; batch * slots * dim], vec![0i8; batch * 6]);
        run_graph(
            &model,
            isa,
            batch,
            &[Input::Index(ids)],
            &mut arena,
            &mut [&mut rows, &mut y],
            |_, _, _, _| {},
        )
        .map(|()| (rows, y))
    };
    let (rows, y) = run(Isa::Scalar, batch, &ids).unwrap();
    let want: Vec<i8> = ids
        .iter()
        .flat_map(|&t| table[t as usize * dim..(t as usize + 1) * dim].to_vec())
        .collect();
    assert_eq!(rows, want);
    for isa in Isa::available() {
        assert_eq!(
            run(isa, batch, &ids).unwrap(),
            (rows.clone(), y.clone()),
            "{}",
            isa.name()
        );
    }
    // Sample 1 alone gives sample 1's bytes.
    let (one_rows, one_y) = run(Isa::Scalar, 1, &ids[slots..2 * slots]).unwrap();
    assert_eq!(one_rows, rows[slots * dim..2 * slots * dim]);
    assert_eq!(one_y, y[6..12]);
    // The float definition (`FloatOp::Embed`, the importer's `Gather` and flatten): the int8
    // rows are the float rows quantized, value for value.
    #[cfg(feature = "std")]
    {
        use crate::import::{FloatGraph, FloatOp, GraphInput, InputKind, Node};
        let q = graph.tensors[1].quant;
        let float_table: Vec<f32> = table.iter().map(|&v| q.dequantize(v)).collect();
        let g = FloatGraph {
            inputs: vec![GraphInput {
                name: "text".into(),
                shape: vec![slots],
                kind: InputKind::Class {
                    classes: vocabulary,
                },
            }],
            outputs: vec!["rows".into()],
            nodes: vec![Node {
                name: "embed".into(),
                op: FloatOp::Embed {
                    classes: vocabulary,
                    dim,
                    table: float_table,
                },
                inputs: vec!["text".into()],
                output: "rows".into(),
                shape: vec![slots * dim],
            }],
            metadata: Vec::new(),
        };
        let x: Vec<f32> = ids.iter().map(|&t| t as f32).collect();
        let float = g
            .run(&[("text", &x)], batch)
            .unwrap()
            .remove("rows")
            .unwrap();
        let quantized: Vec<i8> = float.iter().map(|&v| q.quantize(v)).collect();
        assert_eq!(quantized, rows);
    }
    // An id past the vocabulary, or the wrong count of ids, is refused before anything runs.
    let mut bad = ids.clone();
    bad[slots + 2] = vocabulary as u32;
    assert_eq!(
        run(Isa::Scalar, batch, &bad),
        Err(crate::interp::RunError::ClassRange {
            sample: 1,
            class: vocabulary as u32,
            classes: vocabulary
        })
    );
    assert!(matches!(
        run(Isa::Scalar, batch, &ids[..batch]),
        Err(crate::interp::RunError::ClassCount { .. })
    ));
    // An index input of no slots does not parse.
    let mut g = graph.clone();
    g.tensors[0].shape = Shape::Flat(0);
    assert!(matches!(
        encode_graph(&g),
        Err(crate::write::EncodeError::Invalid(
            crate::format::FormatError::Tensor { index: 0, .. }
        ))
    ));
    // A class joined to a latent is one index per sample.
    let latent = TensorInfo {
        shape: Shape::Flat(4),
        quant: rng.quant(),
        kind: TensorKind::Int8,
    };
    let joined = QuantGraph {
        tensors: vec![
            latent,
            graph.tensors[0],
            TensorInfo {
                shape: Shape::Flat(4 + dim),
                ..latent
            },
        ],
        inputs: vec![0, 1],
        outputs: vec![2],
        nodes: vec![QuantNode {
            inputs: vec![0, 1],
            output: 2,
            ..graph.nodes[0].clone()
        }],
        metadata: "{}".into(),
    };
    assert!(matches!(
        encode_graph(&joined),
        Err(crate::write::EncodeError::Invalid(
            crate::format::FormatError::Op { index: 0, .. }
        ))
    ));
}

/// A `Conv2d` of geometry `g` with values from `seed`, parsed from its encoding.
fn conv_case(g: ConvGeometry, seed: u64) -> (Vec<u8>, i8, Vec<i8>) {
    let mut rng = Lcg(seed);
    let zp_in = (rng.next() % 61) as i8 - 30;
    let k = g.kh * g.kw * g.cin;
    let weights: Vec<i8> = (0..k * g.cout)
        .map(|_| ((rng.next() % 255) as i32 - 127) as i8)
        .collect();
    // Accumulators of about 5300 * sqrt(k): scaled into the int8 range.
    let fit = 31 + (5300.0 * (k as f64).sqrt() / 64.0).log2().ceil() as u8;
    let requant = RequantParams {
        bias: (0..g.cout)
            .map(|_| (rng.next() % 8001) as i32 - 4000)
            .collect(),
        mult: (0..g.cout)
            .map(|_| (1 << 30) + (rng.next() >> 2) as i32)
            .collect(),
        shift: (0..g.cout)
            .map(|_| fit - 1 + (rng.next() % 3) as u8)
            .collect(),
        zp_out: (rng.next() % 21) as i8 - 10,
        min: if rng.next().is_multiple_of(2) {
            -128
        } else {
            -5
        },
        max: 127,
    };
    let body = super::conv::encode(&g, zp_in, &requant, &weights).unwrap();
    (body, zp_in, weights)
}

/// `Conv2d` on every kernel family, whole and in bands of output rows, against its definition:
/// every tap (the padding's as the input zero point) times its weight, summed exactly, then the
/// op's requantization. Shapes include the image layers (1 and 3 output channels), 3-channel
/// inputs, pointwise convolutions read in place and tiles of several GEMMs.
fn check_conv(g: ConvGeometry, batch: usize, seed: u64) {
    let (body, zp_in, weights) = conv_case(g, seed);
    let op = super::Conv2d::parse(
        &mut Reader {
            buf: &body,
            pos: 0,
            validate: true,
        },
        0,
    )
    .unwrap();
    let mut rng = Lcg(seed ^ 0x5555);
    let x: Vec<i8> = (0..batch * g.h * g.w * g.cin).map(|_| rng.i8()).collect();
    let (ho, wo) = g.conv_out();
    let mut want = vec![0i8; batch * ho * wo * g.cout];
    for b in 0..batch {
        for oy in 0..ho {
            for ox in 0..wo {
                for co in 0..g.cout {
                    let mut acc = 0i32;
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                            let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                            let inside =
                                (0..g.h as isize).contains(&iy) && (0..g.w as isize).contains(&ix);
                            for ci in 0..g.cin {
                                let v = if inside {
                                    x[((b * g.h + iy as usize) * g.w + ix as usize) * g.cin + ci]
                                } else {
                                    zp_in
                                };
                                let wv = weights[((co * g.cin + ci) * g.kh + ky) * g.kw + kx];
                                acc += v as i32 * wv as i32;
                            }
                        }
                    }
                    want[((b * ho + oy) * wo + ox) * g.cout + co] = op.gemm.requant.apply(acc, co);
                }
            }
        }
    }
    let kp = op.weights.kp();
    for isa in Isa::available() {
        let mut tile = vec![0i8; TILE_ROWS * kp];
        let mut cx = Cx {
            isa,
            batch,
            tile: &mut tile,
            tile_out: &mut [],
            indices: &[],
        };
        let mut y = vec![0i8; want.len()];
        op.run(&mut cx, &[&x], &mut y).unwrap();
        assert_eq!(y, want, "{g:?} batch {batch} {}", isa.name());
        if batch == 1 && ho > 1 {
            let cut = ho / 2;
            let mut y = vec![0i8; want.len()];
            let (top, bottom) = y.split_at_mut(cut * wo * g.cout);
            op.run_rows(&mut cx, &[&x], top, 0..cut).unwrap();
            op.run_rows(&mut cx, &[&x], bottom, cut..ho).unwrap();
            assert_eq!(y, want, "{g:?} in bands, {}", isa.name());
        }
    }
}

fn conv_geometry(
    cin: usize,
    cout: usize,
    (h, w): (usize, usize),
    k: usize,
    stride: usize,
    pad: usize,
) -> ConvGeometry {
    ConvGeometry {
        cin,
        cout,
        h,
        w,
        kh: k,
        kw: k,
        stride,
        pad,
        out_pad: 0,
    }
}

#[test]
fn conv2d_small_channel_layers_match_the_definition_on_every_isa() {
    for (i, (cin, cout, hw, k, stride, pad)) in [
        (16, 16, 64, 3, 1, 1),
        (16, 3, 64, 3, 1, 1),
        (3, 16, 32, 3, 1, 1),
        (16, 3, 64, 1, 1, 0),
        (16, 1, 20, 3, 1, 1),
        (8, 4, 17, 1, 1, 0),
        (6, 3, 9, 1, 1, 0),
        (64, 2, 8, 3, 1, 1),
        (3, 3, 12, 7, 1, 3),
        (32, 16, 16, 4, 2, 1),
        (120, 3, 6, 3, 1, 1),
    ]
    .into_iter()
    .enumerate()
    {
        for batch in [1, 2] {
            check_conv(
                conv_geometry(cin, cout, (hw, hw), k, stride, pad),
                batch,
                i as u64,
            );
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    #[test]
    fn conv2d_matches_the_definition_on_every_isa(
        cin in 1usize..24,
        cout in 1usize..20,
        (h, w) in (1usize..14, 1usize..14),
        k in 1usize..5,
        stride in 1usize..3,
        pad in 0usize..3,
        batch in 1usize..3,
        seed in proptest::prelude::any::<u64>(),
    ) {
        proptest::prop_assume!(k <= h + 2 * pad && k <= w + 2 * pad && pad < k);
        check_conv(conv_geometry(cin, cout, (h, w), k, stride, pad), batch, seed);
    }
}
