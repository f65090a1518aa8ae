//! What kind of media a MIME type names, the names chat.qwen.ai uses for each kind, file
//! extensions both ways, and MIME sniffing from magic numbers.

/// The four kinds chat.qwen.ai distinguishes when a file is uploaded and referenced.
pub use crate::conversation::MediaKind;

impl MediaKind {
    /// `image/*`, `video/*`, `audio/*`; anything else is a document.
    pub fn from_mime(mime: &str) -> MediaKind {
        let (top, _) = essence(mime).split_once('/').unwrap_or(("", ""));
        if top.eq_ignore_ascii_case("image") {
            MediaKind::Image
        } else if top.eq_ignore_ascii_case("video") {
            MediaKind::Video
        } else if top.eq_ignore_ascii_case("audio") {
            MediaKind::Audio
        } else {
            MediaKind::Document
        }
    }

    /// `filetype` of the getstsToken request.
    pub fn sts_filetype(self) -> &'static str {
        self.show_type()
    }

    /// `showType` of a `files[]` entry.
    pub fn show_type(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
            MediaKind::Document => "file",
        }
    }

    /// `file_class` of a `files[]` entry.
    pub fn file_class(self) -> &'static str {
        match self {
            MediaKind::Image => "vision",
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
            MediaKind::Document => "document",
        }
    }
}

/// Canonical MIME type and extension, in the order `mime_from_filename` prefers.
const TABLE: &[(&str, &str)] = &[
    ("image/png", "png"),
    ("image/jpeg", "jpg"),
    ("image/gif", "gif"),
    ("image/webp", "webp"),
    ("image/bmp", "bmp"),
    ("video/mp4", "mp4"),
    ("video/webm", "webm"),
    ("video/quicktime", "mov"),
    ("audio/mpeg", "mp3"),
    ("audio/wav", "wav"),
    ("audio/ogg", "ogg"),
    ("audio/mp4", "m4a"),
    ("application/pdf", "pdf"),
    ("text/plain", "txt"),
    ("text/markdown", "md"),
    ("text/csv", "csv"),
    ("application/json", "json"),
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "docx",
    ),
    (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "xlsx",
    ),
    (
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "pptx",
    ),
    ("text/html", "html"),
];

/// Other names clients and servers use for the same types.
const MIME_ALIASES: &[(&str, &str)] = &[
    ("image/jpg", "jpg"),
    ("image/pjpeg", "jpg"),
    ("image/x-ms-bmp", "bmp"),
    ("image/x-bmp", "bmp"),
    ("audio/mp3", "mp3"),
    ("audio/x-wav", "wav"),
    ("audio/wave", "wav"),
    ("audio/vnd.wave", "wav"),
    ("audio/x-m4a", "m4a"),
    ("audio/m4a", "m4a"),
    ("application/ogg", "ogg"),
    ("text/x-markdown", "md"),
];

const EXTENSION_ALIASES: &[(&str, &str)] = &[
    ("jpeg", "image/jpeg"),
    ("jpe", "image/jpeg"),
    ("htm", "text/html"),
    ("markdown", "text/markdown"),
    ("oga", "audio/ogg"),
    ("qt", "video/quicktime"),
];

/// `type/subtype` without parameters or surrounding blanks.
fn essence(mime: &str) -> &str {
    mime.split(';').next().unwrap_or("").trim()
}

/// The usual file extension (without a dot) for `mime`; `bin` when unknown.
pub fn extension_for(mime: &str) -> &'static str {
    let mime = essence(mime);
    TABLE
        .iter()
        .chain(MIME_ALIASES)
        .find(|(m, _)| m.eq_ignore_ascii_case(mime))
        .map_or("bin", |(_, ext)| ext)
}

/// The MIME type for a file name's extension, case-insensitively.
pub fn mime_from_filename(name: &str) -> Option<&'static str> {
    // A query or fragment may follow when the name comes from a URL path.
    let name = name.split(['?', '#']).next().unwrap_or("");
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let (stem, ext) = base.rsplit_once('.')?;
    if stem.is_empty() {
        return None;
    }
    TABLE
        .iter()
        .map(|&(m, e)| (e, m))
        .chain(EXTENSION_ALIASES.iter().copied())
        .find(|(e, _)| e.eq_ignore_ascii_case(ext))
        .map(|(_, m)| m)
}

/// Sniffs common magic numbers (PNG, JPEG, GIF, WEBP, PDF, MP4 ftyp, WEBM, WAV, MP3 ID3/frame, OGG) → mime.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Some("image/png");
    }
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Some("image/jpeg");
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Some("image/gif");
    }
    if bytes.len() >= 12 && starts(b"RIFF") {
        match &bytes[8..12] {
            b"WEBP" => return Some("image/webp"),
            b"WAVE" => return Some("audio/wav"),
            _ => {}
        }
    }
    if starts(b"%PDF-") {
        return Some("application/pdf");
    }
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        return Some(ftyp_brand(&bytes[8..12]));
    }
    if starts(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return Some("video/webm");
    }
    if starts(b"OggS") {
        return Some("audio/ogg");
    }
    if starts(b"ID3") || is_mpeg_audio_frame(bytes) {
        return Some("audio/mpeg");
    }
    // "BM" alone is too weak (any text may start so): the two reserved fields must be zero too.
    if bytes.len() >= 26 && starts(b"BM") && bytes[6..10] == [0, 0, 0, 0] {
        return Some("image/bmp");
    }
    None
}

/// ISO base media files share `ftyp`; the major brand tells video from audio and still images.
fn ftyp_brand(brand: &[u8]) -> &'static str {
    match brand {
        b"qt  " => "video/quicktime",
        b"M4A " | b"M4B " => "audio/mp4",
        b"heic" | b"heix" | b"mif1" | b"msf1" => "image/heic",
        b"avif" | b"avis" => "image/avif",
        _ => "video/mp4",
    }
}

/// An MPEG-1/2 audio frame header: 11 sync bits, a valid version and a layer other than the
/// reserved one (which also keeps AAC's ADTS, layer 0, out).
fn is_mpeg_audio_frame(bytes: &[u8]) -> bool {
    let [0xFF, b1, b2, ..] = *bytes else {
        return false;
    };
    let version = (b1 >> 3) & 0b11;
    let layer = (b1 >> 1) & 0b11;
    let bitrate = b2 >> 4;
    b1 & 0xE0 == 0xE0 && version != 0b01 && layer != 0 && bitrate != 0b1111
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_mime() {
        assert_eq!(MediaKind::from_mime("image/png"), MediaKind::Image);
        assert_eq!(MediaKind::from_mime("IMAGE/JPEG; q=1"), MediaKind::Image);
        assert_eq!(MediaKind::from_mime("video/mp4"), MediaKind::Video);
        assert_eq!(MediaKind::from_mime("audio/mpeg"), MediaKind::Audio);
        assert_eq!(MediaKind::from_mime("application/pdf"), MediaKind::Document);
        assert_eq!(MediaKind::from_mime("text/plain"), MediaKind::Document);
        assert_eq!(MediaKind::from_mime(""), MediaKind::Document);
        assert_eq!(MediaKind::from_mime("imagery"), MediaKind::Document);
    }

    #[test]
    fn qwen_names_per_kind() {
        let all = [
            MediaKind::Image,
            MediaKind::Video,
            MediaKind::Audio,
            MediaKind::Document,
        ];
        let sts: Vec<_> = all.iter().map(|k| k.sts_filetype()).collect();
        let show: Vec<_> = all.iter().map(|k| k.show_type()).collect();
        let class: Vec<_> = all.iter().map(|k| k.file_class()).collect();
        assert_eq!(sts, ["image", "video", "audio", "file"]);
        assert_eq!(show, ["image", "video", "audio", "file"]);
        assert_eq!(class, ["vision", "video", "audio", "document"]);
    }

    #[test]
    fn extensions_both_ways() {
        for &(mime, ext) in TABLE {
            assert_eq!(extension_for(mime), ext);
            assert_eq!(mime_from_filename(&format!("x.{ext}")), Some(mime));
        }
        assert_eq!(extension_for("image/JPG"), "jpg");
        assert_eq!(extension_for("audio/x-wav"), "wav");
        assert_eq!(extension_for(" text/plain; charset=utf-8"), "txt");
        assert_eq!(extension_for("application/x-unknown"), "bin");
        assert_eq!(extension_for(""), "bin");
        assert_eq!(mime_from_filename("PHOTO.JPEG"), Some("image/jpeg"));
        assert_eq!(
            mime_from_filename("dir.v2/report.PDF"),
            Some("application/pdf")
        );
        assert_eq!(mime_from_filename("/a/b/c.png?key=1#f"), Some("image/png"));
        assert_eq!(mime_from_filename("README"), None);
        assert_eq!(mime_from_filename(".png"), None);
        assert_eq!(mime_from_filename("a.exe"), None);
        assert_eq!(mime_from_filename("dir.png/file"), None);
    }

    #[test]
    fn sniffs_magic_numbers() {
        let cases: &[(&[u8], &str)] = &[
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "image/png"),
            (&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10], "image/jpeg"),
            (b"GIF89a\x01\0", "image/gif"),
            (b"GIF87a", "image/gif"),
            (b"RIFF\x24\0\0\0WEBPVP8 ", "image/webp"),
            (b"RIFF\x24\0\0\0WAVEfmt ", "audio/wav"),
            (b"%PDF-1.7\n", "application/pdf"),
            (b"\0\0\0\x18ftypisom\0\0\x02\0", "video/mp4"),
            (b"\0\0\0\x14ftypqt  \0\0\0\0", "video/quicktime"),
            (b"\0\0\0\x20ftypM4A \0\0\0\0", "audio/mp4"),
            (b"\0\0\0\x18ftypheic\0\0\0\0", "image/heic"),
            (&[0x1A, 0x45, 0xDF, 0xA3, 0x9F], "video/webm"),
            (b"ID3\x04\0\0\0\0\0\0", "audio/mpeg"),
            (&[0xFF, 0xFB, 0x90, 0x64], "audio/mpeg"),
            (&[0xFF, 0xF3, 0x48, 0xC4], "audio/mpeg"),
            (b"OggS\0\x02", "audio/ogg"),
        ];
        for (bytes, mime) in cases {
            assert_eq!(sniff(bytes), Some(*mime), "{bytes:?}");
        }
        let mut bmp = b"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0".to_vec();
        bmp.resize(40, 0);
        assert_eq!(sniff(&bmp), Some("image/bmp"));
    }

    #[test]
    fn does_not_guess_from_weak_or_absent_signatures() {
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"hello world"), None);
        assert_eq!(sniff(b"BMW is a car brand, not a bitmap"), None);
        assert_eq!(sniff(b"RIFF"), None);
        assert_eq!(sniff(b"RIFF\0\0\0\0AVI LIST"), None);
        // AAC ADTS (layer bits 00) is not MP3.
        assert_eq!(sniff(&[0xFF, 0xF1, 0x50, 0x80]), None);
        assert_eq!(sniff(&[0xFF]), None);
        assert_eq!(sniff(b"\0\0\0\x18ftyp"), None);
    }
}
