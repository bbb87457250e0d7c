//! Decoded images.

/// An 8-bit RGB image, rows of `width * 3` bytes (HWC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `height * width * 3` bytes, row-major, RGB.
    pub pixels: Vec<u8>,
}

impl Image {
    /// An image from RGB bytes; `None` when the length does not match.
    pub fn new(width: u32, height: u32, pixels: Vec<u8>) -> Option<Self> {
        (pixels.len() == width as usize * height as usize * 3).then_some(Self {
            width,
            height,
            pixels,
        })
    }
}
