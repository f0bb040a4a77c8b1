//! The picture: frames of a Mandelbrot zoom, computed in Rust and written as
//! uncompressed YUV 4:2:0 in the Y4M container. Deterministic: the same parameters give
//! the same bytes, in one process or spread over many.

use serde::{Deserialize, Serialize};

/// Everything that determines the pixels; its hash is the plan's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Params {
    pub width: u32,
    pub height: u32,
    pub frames: u32,
    pub fps: u32,
    pub center_x: f64,
    pub center_y: f64,
    /// The zoom of the first frame, and the factor from one frame to the next.
    pub zoom: f64,
    pub zoom_per_frame: f64,
    pub max_iterations: u32,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            width: 320,
            height: 180,
            frames: 48,
            fps: 24,
            center_x: -0.743_643_887_037_151,
            center_y: 0.131_825_904_205_33,
            zoom: 1.0,
            zoom_per_frame: 1.12,
            max_iterations: 400,
        }
    }
}

impl Params {
    /// Why these parameters cannot be rendered, if they cannot.
    pub fn problem(&self) -> Option<String> {
        if self.width == 0 || self.height == 0 || self.width % 2 == 1 || self.height % 2 == 1 {
            return Some(format!(
                "the size must be even and not zero (4:2:0 chroma), not {}x{}",
                self.width, self.height
            ));
        }
        if self.width > 7680 || self.height > 4320 {
            return Some("the size is over 7680x4320".into());
        }
        if self.fps == 0 || self.max_iterations == 0 || self.max_iterations > 100_000 {
            return Some("fps must be at least 1 and maxIterations 1 to 100,000".into());
        }
        let finite = [self.center_x, self.center_y, self.zoom, self.zoom_per_frame];
        if finite.iter().any(|v| !v.is_finite()) || self.zoom <= 0.0 || self.zoom_per_frame <= 0.0 {
            return Some("center, zoom and zoomPerFrame must be finite, zooms positive".into());
        }
        None
    }

    /// The bytes of one frame, `FRAME\n` included.
    pub fn frame_len(&self) -> usize {
        let luma = (self.width * self.height) as usize;
        6 + luma + luma / 2
    }
}

/// The Y4M stream header.
pub fn header(p: &Params) -> Vec<u8> {
    format!(
        "YUV4MPEG2 W{} H{} F{}:1 Ip A1:1 C420jpeg\n",
        p.width, p.height, p.fps
    )
    .into_bytes()
}

/// Frames `start..end` (frame numbers from 0), each as `FRAME\n` and its Y, U and V
/// planes.
pub fn render(p: &Params, start: u32, end: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.frame_len() * end.saturating_sub(start) as usize);
    for frame in start..end {
        out.extend_from_slice(b"FRAME\n");
        render_frame(p, frame, &mut out);
    }
    out
}

fn render_frame(p: &Params, frame: u32, out: &mut Vec<u8>) {
    let (w, h) = (p.width as usize, p.height as usize);
    let zoom = p.zoom * p.zoom_per_frame.powi(frame as i32);
    let scale = 3.0 / (zoom * p.width as f64);
    let mut counts = vec![0u32; w * h];
    for y in 0..h {
        let ci = p.center_y + (y as f64 - h as f64 / 2.0) * scale;
        for x in 0..w {
            let cr = p.center_x + (x as f64 - w as f64 / 2.0) * scale;
            counts[y * w + x] = escape(cr, ci, p.max_iterations);
        }
    }
    let max = p.max_iterations;
    // Inside the set: black. Outside: brighter the longer the point took to escape.
    out.extend(counts.iter().map(|&n| {
        if n >= max {
            16
        } else {
            16 + ((n % 64) * 219 / 63) as u8
        }
    }));
    // Chroma from the top-left pixel of each 2x2 block.
    for plane in [(37u32, 11u32), (23, 53)] {
        for y in (0..h).step_by(2) {
            for x in (0..w).step_by(2) {
                let n = counts[y * w + x];
                out.push(if n >= max {
                    128
                } else {
                    (64 + (n * plane.0 + plane.1) % 128) as u8
                });
            }
        }
    }
}

/// Iterations until `z² + c` leaves the radius-2 disc, at most `max`.
fn escape(cr: f64, ci: f64, max: u32) -> u32 {
    let (mut zr, mut zi) = (0.0f64, 0.0f64);
    for n in 0..max {
        let (zr2, zi2) = (zr * zr, zi * zi);
        if zr2 + zi2 > 4.0 {
            return n;
        }
        zi = 2.0 * zr * zi + ci;
        zr = zr2 - zi2 + cr;
    }
    max
}
