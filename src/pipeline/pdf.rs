//! `extract_text`'s backend: PDF bytes → one text string per page, in
//! reading order, with tables, captions and footnotes marked.
//!
//! The parser is `lopdf`; everything above it is ours, chosen by
//! measurement against poppler's `pdftotext` (numbers and the rejected
//! candidates in `docs/pdf-extraction.md`):
//!
//! * [`content`] interprets page content streams (text state, matrices,
//!   Form XObjects, rules) into positioned glyphs;
//! * [`font`] decodes shown strings (`/ToUnicode`, encodings and
//!   `/Differences`, Type 1 and CFF built-in encodings, glyph names,
//!   widths), each font built once per document — rebuilding them on every
//!   page was 95 % of pdf-extract's time;
//! * [`layout`] turns glyphs into text geometrically: words and lines,
//!   two-column reading order, tables (`[TABLE n: caption]` … `[/TABLE]`,
//!   one row per line, cells separated by ` | `), figure captions
//!   (`[FIGURE n: caption]`), footnotes (`[FOOTNOTE m: text]`, at the
//!   page's end), with running headers, footers, page numbers and line
//!   numbers removed.
//!
//! **Limits.** The page count is checked before any page is read, and
//! every stream is inflated with a cap (a decompression bomb is
//! [`PdfError::TooLarge`]). Wall time and memory are the worker process's
//! business (`pdf_child`): the runner never calls this module in its own
//! process. **Containment.** Every page runs under `catch_unwind` (lopdf
//! and the CFF parser are not ours); a page that fails is left empty, a
//! document where every page fails is [`PdfError::Unreadable`]. Panic
//! messages from contained panics go to `tracing` instead of stderr (see
//! [`quiet_panics`]).
//!
//! What this module deliberately does *not* do (the clean-text module
//! does): ligature normalisation (`ﬁ` arrives as U+FB01 when the font says
//! so), de-hyphenation of body lines (a word broken at a line end arrives
//! as `hyph-` / `enated` on two lines), and section detection.

mod cmap;
mod content;
mod data;
mod font;
mod layout;
mod names;

use crate::engine::ErrorKind;
use lopdf::{Document, Object, ObjectId};
use std::borrow::Cow;
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Once;
use std::time::Instant;

/// Why a PDF produced no text. [`PdfError::kind`] maps each variant to the
/// error kind the `extract_text` action fails with; `Encrypted` and
/// `Unreadable` are separate so the log says whether a password (rather
/// than a better file) would help.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("PDF is encrypted: {0}")]
    Encrypted(String),
    #[error("PDF is unreadable: {0}")]
    Unreadable(String),
    #[error("cannot read {path}: {message}")]
    Io { path: String, message: String },
    /// Over a configured limit: file size, page count, decoded stream
    /// size, extracted text size, or the extraction worker's memory limit.
    #[error("PDF is too large: {0}")]
    TooLarge(String),
    /// The extraction worker ran past its wall-time (or CPU-time) limit.
    #[error("PDF extraction timed out: {0}")]
    Timeout(String),
    /// The extraction worker misbehaved in a way that says nothing about
    /// the PDF (not a runner binary, garbled reply): a bug or a broken
    /// installation, retried at phase level.
    #[error("PDF worker failed: {0}")]
    Worker(String),
    /// The host is out of processes, file descriptors or memory for a
    /// worker: says nothing about the PDF, retried at phase level.
    #[error("cannot run the PDF worker: {0}")]
    Exhausted(String),
}

impl PdfError {
    /// The error kind the `extract_text` action reports. The PDF's own
    /// faults are permanent (`pdf_unreadable`, `pdf_too_large`,
    /// `pdf_timeout`); the runner's are retryable (`internal`,
    /// `resource_exhausted`).
    pub fn kind(&self) -> ErrorKind {
        match self {
            PdfError::Encrypted(_) | PdfError::Unreadable(_) | PdfError::Io { .. } => {
                ErrorKind::PdfUnreadable
            }
            PdfError::TooLarge(_) => ErrorKind::PdfTooLarge,
            PdfError::Timeout(_) => ErrorKind::PdfTimeout,
            PdfError::Worker(_) => ErrorKind::Internal,
            PdfError::Exhausted(_) => ErrorKind::ResourceExhausted,
        }
    }
}

/// Limits the extraction itself enforces (the worker process adds wall
/// time and memory, see `pdf_child`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractLimits {
    /// More pages than this is [`PdfError::TooLarge`], decided before any
    /// page is extracted, so a page-count bomb costs one tree walk.
    pub max_pages: usize,
    /// A page content stream that inflates past this many bytes is
    /// [`PdfError::TooLarge`] (a decompression bomb), found by a capped
    /// inflate before the crate inflates it without a cap.
    pub max_stream_bytes: u64,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        ExtractLimits {
            max_pages: 2000,
            max_stream_bytes: 256 << 20,
        }
    }
}

/// The text of a PDF: `pages[i]` is page `i + 1`, lines separated by `\n`, a
/// blank line where the layout has a vertical gap or jumps to a new column.
#[derive(Debug, Clone, Default)]
pub struct ExtractedPdf {
    pub pages: Vec<String>,
    /// Wall-clock time of the extraction (parse + all pages), for the prep
    /// phase's timing report.
    pub ms: u64,
    /// What the layout found (not carried through the worker's reply).
    pub stats: ExtractStats,
}

/// Counts of what the layout found in a document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExtractStats {
    /// Pages read as two columns.
    pub two_column_pages: usize,
    /// `[TABLE …]` blocks.
    pub tables: usize,
    /// `[FIGURE …]` captions.
    pub captions: usize,
    /// `[FOOTNOTE …]` entries.
    pub footnotes: usize,
}

/// Reads `path` and extracts it in this process with the default limits;
/// see [`extract_bytes`]. The runner itself extracts in a worker process
/// (`pdf_child`); this is for benchmarks and tests.
pub fn extract_file(path: &Path) -> Result<ExtractedPdf, PdfError> {
    let bytes = read_capped(path, u64::MAX)?;
    extract_bytes(&bytes)
}

/// Reads a regular file of at most `max_bytes` bytes: anything else (a
/// FIFO that would block, a directory, a device that never ends) is an
/// error naming the file, and a larger file is [`PdfError::TooLarge`].
pub fn read_capped(path: &Path, max_bytes: u64) -> Result<Vec<u8>, PdfError> {
    use crate::fsx::{read_bytes_capped, CappedReadError};
    read_bytes_capped(path, max_bytes).map_err(|e| match e {
        CappedReadError::TooLarge { limit } => PdfError::TooLarge(format!(
            "{}: over the limit of {limit} bytes (pdf.max_file_mb)",
            path.display()
        )),
        CappedReadError::NotRegular { kind } => PdfError::Io {
            path: path.display().to_string(),
            message: format!("not a regular file ({kind})"),
        },
        CappedReadError::Io(e) => io_error(path, &e),
        // Bytes are never decoded as text here.
        CappedReadError::NotUtf8 => PdfError::Io {
            path: path.display().to_string(),
            message: "unreadable".into(),
        },
    })
}

/// An I/O error on `path`: the host running out of descriptors or memory
/// is [`PdfError::Exhausted`] (retryable), anything else is about the file.
pub(crate) fn io_error(path: &Path, e: &std::io::Error) -> PdfError {
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EAGAIN) => {
            PdfError::Exhausted(format!("{}: {e}", path.display()))
        }
        _ => PdfError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        },
    }
}

/// Extracts the text of every page of a PDF held in memory.
///
/// Never panics on bad input: a missing `%PDF` header, an unparsable file
/// (truncated, garbage) or one where no page can be read is
/// [`PdfError::Unreadable`]; a file that needs a user password is
/// [`PdfError::Encrypted`]. Files encrypted with an empty user password
/// (owner-password "copy protection", common on publisher PDFs) are
/// decrypted and extracted.
pub fn extract_bytes(bytes: &[u8]) -> Result<ExtractedPdf, PdfError> {
    extract_bytes_limited(bytes, &ExtractLimits::default())
}

/// [`extract_bytes`] under explicit limits: more than `max_pages` pages, or
/// a page content stream inflating past `max_stream_bytes`, is
/// [`PdfError::TooLarge`].
pub fn extract_bytes_limited(
    bytes: &[u8],
    limits: &ExtractLimits,
) -> Result<ExtractedPdf, PdfError> {
    let started = Instant::now();
    if bytes.is_empty() {
        return Err(PdfError::Unreadable("empty file".into()));
    }
    // The spec puts the header at byte 0, but readers (Acrobat, poppler)
    // accept it within the first 1024 bytes, and so do we.
    let head = &bytes[..bytes.len().min(1024)];
    if !head.windows(5).any(|w| w == b"%PDF-") {
        return Err(PdfError::Unreadable("not a PDF (no %PDF- header)".into()));
    }
    quiet_panics();
    let doc = contained(|| load(bytes))
        .unwrap_or_else(|panic| Err(PdfError::Unreadable(format!("parser panicked: {panic}"))))?;
    // Count before anything costs per-page time. lopdf's page iterator
    // walks /Kids with a depth and an object-count bound, so it ends even
    // on a cyclic tree; stop one past the limit.
    let counted = contained(|| {
        doc.page_iter()
            .take(limits.max_pages.saturating_add(1))
            .count()
    })
    .map_err(|panic| PdfError::Unreadable(format!("page tree: parser panicked: {panic}")))?;
    if counted > limits.max_pages {
        return Err(PdfError::TooLarge(format!(
            "more than {} pages (pdf.max_pages)",
            limits.max_pages
        )));
    }
    let page_ids: Vec<ObjectId> = contained(|| doc.get_pages().into_values().collect())
        .map_err(|panic| PdfError::Unreadable(format!("page tree: parser panicked: {panic}")))?;
    if page_ids.is_empty() {
        return Err(PdfError::Unreadable("the document has no pages".into()));
    }
    let (pages, stats) = extract_pages(&doc, &page_ids, limits)?;
    Ok(ExtractedPdf {
        pages,
        ms: started.elapsed().as_millis() as u64,
        stats,
    })
}

/// Every page through the interpreter and the layout: fonts are shared by
/// all pages; furniture is decided across pages.
fn extract_pages(
    doc: &Document,
    page_ids: &[ObjectId],
    limits: &ExtractLimits,
) -> Result<(Vec<String>, ExtractStats), PdfError> {
    let mut cache = content::DocCache::default();
    let mut frags: Vec<Result<layout::PageFrags, String>> = Vec::with_capacity(page_ids.len());
    for (n, &id) in page_ids.iter().enumerate() {
        match contained(|| read_page(doc, &mut cache, id, limits.max_stream_bytes)) {
            // Text drawn with no font at all (none selected, or a page
            // without resources) cannot be read: the page failed.
            Ok(Ok(page)) if page.glyphs.is_empty() && page.fontless > 0 => {
                frags.push(Err("text shown without a font".into()))
            }
            Ok(Ok(page)) => {
                if page.dropped > 0 {
                    tracing::warn!(
                        page = n + 1,
                        glyphs = page.dropped,
                        "PDF page glyphs past the cap dropped"
                    );
                }
                frags.push(Ok(layout::fragments(&page)))
            }
            Ok(Err(e @ PdfError::TooLarge(_))) => return Err(e),
            Ok(Err(e)) => frags.push(Err(e.to_string())),
            Err(panic) => {
                tracing::warn!(page = n + 1, panic = %panic, "PDF page unreadable; left empty");
                frags.push(Err(format!("parser panicked: {panic}")));
            }
        }
    }
    if frags.iter().all(Result::is_err) {
        let first = frags
            .iter()
            .find_map(|r| r.as_ref().err().cloned())
            .unwrap_or_default();
        return Err(PdfError::Unreadable(format!(
            "no page could be read: {first}"
        )));
    }
    let edges: Vec<Vec<layout::EdgeRow>> = frags
        .iter()
        .map(|p| p.as_ref().map(layout::edge_rows).unwrap_or_default())
        .collect();
    let furniture = layout::furniture(&edges);
    let mut stats = ExtractStats::default();
    let mut pages = Vec::with_capacity(frags.len());
    for (p, mut drop) in frags.iter().zip(furniture) {
        let Ok(p) = p else {
            pages.push(String::new());
            continue;
        };
        drop.extend(layout::line_numbers(p));
        let (text, s) = match contained(|| layout::render_page(p, &drop)) {
            Ok(r) => r,
            Err(panic) => {
                tracing::warn!(panic = %panic, "PDF page layout failed; left empty");
                (String::new(), layout::PageStats::default())
            }
        };
        stats.two_column_pages += usize::from(s.columns == 2);
        stats.tables += s.tables;
        stats.captions += s.captions;
        stats.footnotes += s.footnotes;
        pages.push(text);
    }
    Ok((pages, stats))
}

/// Longest `/Parent` chain followed for an inherited page attribute.
const MAX_TREE_DEPTH: usize = 32;

/// A page attribute, inherited through `/Parent` when the page lacks it.
fn inherited<'a>(doc: &'a Document, page: ObjectId, key: &[u8]) -> Option<&'a Object> {
    let mut id = page;
    for _ in 0..MAX_TREE_DEPTH {
        let dict = doc.get_dictionary(id).ok()?;
        if let Ok(v) = dict.get(key) {
            return Some(font::deref(doc, v));
        }
        id = dict.get(b"Parent").and_then(Object::as_reference).ok()?;
    }
    None
}

/// A page's content streams (concatenated) and resources, through the
/// interpreter.
fn read_page(
    doc: &Document,
    cache: &mut content::DocCache,
    id: ObjectId,
    max_stream_bytes: u64,
) -> Result<content::PageContent, PdfError> {
    let page = doc
        .get_dictionary(id)
        .map_err(|e| PdfError::Unreadable(format!("page object: {e}")))?;
    let mut data: Vec<u8> = Vec::new();
    let parts: Vec<&Object> = match page.get(b"Contents").map(|c| font::deref(doc, c)) {
        Ok(Object::Array(a)) => a.iter().map(|o| font::deref(doc, o)).collect(),
        Ok(o) => vec![o],
        Err(_) => Vec::new(),
    };
    for part in parts {
        if let Object::Stream(s) = part {
            let bytes = stream_data(s, max_stream_bytes)?;
            if data.len() as u64 + bytes.len() as u64 > max_stream_bytes {
                return Err(PdfError::TooLarge(format!(
                    "page content streams inflate past {max_stream_bytes} bytes"
                )));
            }
            data.extend_from_slice(&bytes);
            data.push(b'\n');
        }
    }
    let resources = inherited(doc, id, b"Resources").and_then(|r| r.as_dict().ok());
    content::run_page(doc, cache, &data, resources, max_stream_bytes)
}

/// A stream's decoded bytes. `/FlateDecode` (the filter of nearly every
/// content stream and font) is inflated here with a cap of `max_bytes`:
/// a bomb is [`PdfError::TooLarge`], a corrupt stream gives what inflated
/// before the damage. Other filters go through lopdf (after the same
/// capped check when Flate is among them); the worker's memory limit
/// covers those.
pub(crate) fn stream_data(
    stream: &lopdf::Stream,
    max_bytes: u64,
) -> Result<Cow<'_, [u8]>, PdfError> {
    use std::io::Read as _;
    let filters: Vec<&[u8]> = match stream.dict.get(b"Filter") {
        Ok(Object::Name(n)) => vec![n.as_slice()],
        Ok(Object::Array(a)) => a.iter().filter_map(|o| o.as_name().ok()).collect(),
        _ => Vec::new(),
    };
    if filters.is_empty() {
        return Ok(Cow::Borrowed(&stream.content));
    }
    let flate = filters.iter().any(|f| *f == b"FlateDecode" || *f == b"Fl");
    let mut inflated = None;
    if flate {
        let mut out = Vec::new();
        let read = flate2::read::ZlibDecoder::new(stream.content.as_slice())
            .take(max_bytes.saturating_add(1))
            .read_to_end(&mut out);
        if read.is_err() && out.is_empty() {
            // Some writers omit the zlib header: try a raw deflate.
            let _ = flate2::read::DeflateDecoder::new(stream.content.as_slice())
                .take(max_bytes.saturating_add(1))
                .read_to_end(&mut out);
        }
        if out.len() as u64 > max_bytes {
            return Err(PdfError::TooLarge(format!(
                "a stream inflates past {max_bytes} bytes"
            )));
        }
        inflated = Some(out);
    }
    let simple = filters.len() == 1 && flate && !stream.dict.has(b"DecodeParms");
    match inflated {
        Some(out) if simple => Ok(Cow::Owned(out)),
        _ => Ok(stream
            .decompressed_content()
            .map(Cow::Owned)
            .unwrap_or(Cow::Borrowed(&stream.content))),
    }
}

/// Parses the file and removes an empty-password encryption.
fn load(bytes: &[u8]) -> Result<Document, PdfError> {
    let mut doc = match Document::load_mem(bytes) {
        Ok(doc) => doc,
        // lopdf can fail on an encrypted file before it gets to decrypt it
        // (encrypted object streams); say "encrypted" rather than "broken".
        Err(e) if contains(bytes, b"/Encrypt") => {
            return Err(PdfError::Encrypted(format!("cannot open: {e}")));
        }
        Err(e) => return Err(PdfError::Unreadable(e.to_string())),
    };
    if doc.is_encrypted() {
        doc.decrypt("")
            .map_err(|e| PdfError::Encrypted(format!("a password is required ({e})")))?;
    }
    Ok(doc)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------
// Panic containment
// ---------------------------------------------------------------------------

thread_local! {
    /// Set while this thread runs parser code whose panics we catch.
    static CONTAINING: Cell<bool> = const { Cell::new(false) };
}

/// Installs (once per process) a panic hook that stays silent for panics
/// raised inside [`contained`] and defers to the previous hook otherwise.
///
/// Swapping the hook around each call would race with other threads (and
/// with test harnesses); a single wrapping hook plus a thread-local flag
/// does not. If other code later replaces the hook, contained panics are
/// merely printed again — nothing breaks.
fn quiet_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CONTAINING.with(Cell::get) {
                tracing::debug!(panic = %info, "PDF parser panic (contained)");
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic into `Err(message)`.
fn contained<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            CONTAINING.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(CONTAINING.with(|c| c.replace(true)));
    // AssertUnwindSafe: after a panic the only state we keep is the error
    // message; the half-built page of a failed call is dropped.
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_check_rejects_non_pdf_bytes() {
        let e = extract_bytes(b"<html>not found</html>").unwrap_err();
        assert!(matches!(e, PdfError::Unreadable(_)), "{e}");
        assert!(matches!(extract_bytes(b""), Err(PdfError::Unreadable(_))));
    }

    #[test]
    fn contained_turns_panics_into_errors() {
        quiet_panics();
        let r: Result<(), String> = contained(|| panic!("boom"));
        assert_eq!(r.unwrap_err(), "boom");
        assert!(!CONTAINING.with(Cell::get), "flag is reset after the call");
    }
}
