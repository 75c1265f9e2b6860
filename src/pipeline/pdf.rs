//! `extract_text`'s backend: PDF bytes → one text string per page, in
//! reading order.
//!
//! The parser and font decoding are `pdf-extract` (pure Rust, on `lopdf`).
//! It was picked by measurement against poppler's `pdftotext` on two-column
//! papers; the numbers and the rejected candidates are in
//! `docs/pdf-extraction.md`. Three things are ours rather than the crate's:
//!
//! * **Layout to text.** The crate's own `PlainTextOutput` only looks for word
//!   gaps where a new show-text operator starts, so words separated by a kern
//!   inside one `TJ` array run together ("Wedescribe"), and marginal line
//!   numbers and superscripts glue onto words. [`PageText`] gets every glyph
//!   with its text matrix and decides spaces and line breaks geometrically,
//!   in the glyph's own baseline direction (so the rotated arXiv stamp stays
//!   one line).
//! * **Reading order** is content-stream order. TeX, groff and most
//!   publisher tools write a two-column page column by column, so stream
//!   order is column order; pdftotext's geometric block ordering scored
//!   *worse* than stream order on our tagged two-column papers.
//! * **Repairs before extraction.** Known holes are patched in the parsed
//!   document: text drawn with the `'` / `"` operators (which the crate
//!   drops), pages without a `/MediaBox` (on which it panics), and
//!   `/Parent` links that loop (on which its inherited-attribute lookup
//!   never ends).
//! * **Limits.** The page count is checked before any page is extracted,
//!   pages are shown to the crate in chunks (it looks each page up through
//!   the whole page tree, which made time grow with the square of the page
//!   count; see `extract_in_chunks`), and page content streams
//!   are inflated with a cap (a decompression bomb is [`PdfError::TooLarge`]).
//!   Wall time and memory are the worker process's business
//!   (`pdf_child`): the runner never calls this module in its own process.
//! * **Containment.** The crate has many `unwrap()`s on document structure
//!   (text shown before a font is set, a broken font), so every page runs under
//!   `catch_unwind`; a page that fails is left empty, a document where every
//!   page fails is [`PdfError::Unreadable`]. Panic messages from contained
//!   panics go to `tracing` instead of stderr (see [`quiet_panics`]).
//!
//! What this module deliberately does *not* do (the clean-text module does):
//! ligature normalisation (`ﬁ` arrives as U+FB01 when the font's ToUnicode
//! says so, as `fi` otherwise), de-hyphenation (a word broken at a line end
//! arrives as `hyphen-` / `ated` on two lines), and running header / page
//! number removal (they arrive as ordinary lines, usually first / last).

use crate::engine::ErrorKind;
use pdf_extract::{Document, MediaBox, OutputDev, OutputError, Transform};
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
    let mut doc = contained(|| load(bytes))
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
    let page_numbers: Vec<u32> = contained(|| doc.get_pages().into_keys().collect())
        .map_err(|panic| PdfError::Unreadable(format!("page tree: parser panicked: {panic}")))?;
    if page_numbers.is_empty() {
        return Err(PdfError::Unreadable("the document has no pages".into()));
    }
    let cut = contained(|| cut_parent_cycles(&mut doc)).unwrap_or(0);
    if cut > 0 {
        tracing::debug!(links = cut, "cut /Parent links that loop or nest too deep");
    }
    contained(|| inflate_page_contents(&mut doc, limits.max_stream_bytes)).unwrap_or(Ok(0))?;
    let rewritten = contained(|| expand_quote_operators(&mut doc)).unwrap_or(0);
    if rewritten > 0 {
        tracing::debug!(pages = rewritten, "rewrote ' and \" text operators");
    }
    let boxed = contained(|| add_missing_media_boxes(&mut doc)).unwrap_or(0);
    if boxed > 0 {
        tracing::debug!(pages = boxed, "gave pages without /MediaBox a default one");
    }
    let results = extract_in_chunks(&mut doc, &page_numbers);
    let failed = results.iter().filter(|r| r.is_err()).count();
    if failed == results.len() {
        let first = results
            .into_iter()
            .find_map(Result::err)
            .unwrap_or_default();
        return Err(PdfError::Unreadable(format!(
            "no page could be read: {first}"
        )));
    }
    let pages = results
        .into_iter()
        .zip(&page_numbers)
        .map(|(r, n)| {
            r.unwrap_or_else(|e| {
                tracing::warn!(page = n, error = %e, "PDF page unreadable; left empty");
                String::new()
            })
        })
        .collect();
    Ok(ExtractedPdf {
        pages,
        ms: started.elapsed().as_millis() as u64,
    })
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

/// Rewrites the `'` and `"` text operators of every page into their
/// documented equivalents (`T* … Tj`, `Tw Tc T* … Tj`) and returns how many
/// pages changed.
///
/// pdf-extract 0.12 does not implement these two operators and silently
/// drops their text. Ghostscript's pdfwrite (ps2pdf: the dvips route that
/// many astrophysics papers still take) uses `'` for most lines after the
/// first of a paragraph, so without this a quarter of such a paper is lost.
/// Pages without them are only scanned, not re-parsed.
fn expand_quote_operators(doc: &mut Document) -> usize {
    use pdf_extract::content::{Content, Operation};
    let mut changed = 0;
    for page_id in doc.get_pages().into_values() {
        let Ok(data) = doc.get_page_content(page_id) else {
            continue;
        };
        if !may_have_quote_operator(&data) {
            continue;
        }
        let Ok(content) = Content::decode(&data) else {
            continue;
        };
        if !content
            .operations
            .iter()
            .any(|op| op.operator == "'" || op.operator == "\"")
        {
            continue;
        }
        let mut operations = Vec::with_capacity(content.operations.len() + 16);
        for op in content.operations {
            match (op.operator.as_str(), op.operands.len()) {
                ("'", 1) => {
                    operations.push(Operation::new("T*", vec![]));
                    operations.push(Operation::new("Tj", op.operands));
                }
                ("\"", 3) => {
                    let mut operands = op.operands.into_iter();
                    let (Some(aw), Some(ac), Some(text)) =
                        (operands.next(), operands.next(), operands.next())
                    else {
                        continue;
                    };
                    operations.push(Operation::new("Tw", vec![aw]));
                    operations.push(Operation::new("Tc", vec![ac]));
                    operations.push(Operation::new("T*", vec![]));
                    operations.push(Operation::new("Tj", vec![text]));
                }
                _ => operations.push(op),
            }
        }
        let Ok(bytes) = (Content { operations }).encode() else {
            continue;
        };
        if replace_page_content(doc, page_id, bytes) {
            changed += 1;
        }
    }
    changed
}

/// Cheap pre-check: a quote operator follows a string operand, so some `'`
/// or `"` has `)` or `>` as the previous non-blank byte. Apostrophes inside
/// strings ("(don't)") mostly don't; false positives only cost a parse.
fn may_have_quote_operator(data: &[u8]) -> bool {
    let mut previous = b' ';
    for &b in data {
        if (b == b'\'' || b == b'"') && (previous == b')' || previous == b'>') {
            return true;
        }
        if !b.is_ascii_whitespace() {
            previous = b;
        }
    }
    false
}

/// Stores `bytes` (uncompressed, so the extractor need not inflate it
/// again) as the page's content. lopdf's `change_page_content` would
/// deflate it first.
fn replace_page_content(
    doc: &mut Document,
    page_id: pdf_extract::ObjectId,
    bytes: Vec<u8>,
) -> bool {
    use pdf_extract::{Dictionary, Object, Stream};
    let contents = match doc
        .get_dictionary(page_id)
        .and_then(|page| page.get(b"Contents"))
    {
        Ok(Object::Reference(id)) => Some(*id),
        Ok(Object::Array(parts)) if parts.len() == 1 => parts[0].as_reference().ok(),
        Ok(Object::Array(_)) => None,
        _ => return false,
    };
    match contents {
        Some(id) => match doc.get_object_mut(id).and_then(Object::as_stream_mut) {
            Ok(stream) => {
                stream.set_plain_content(bytes);
                true
            }
            Err(_) => false,
        },
        // Several streams were concatenated: replace them with one new one.
        None => {
            let id = doc.add_object(Stream::new(Dictionary::new(), bytes));
            match doc.get_object_mut(page_id).and_then(Object::as_dict_mut) {
                Ok(page) => {
                    page.set("Contents", id);
                    true
                }
                Err(_) => false,
            }
        }
    }
}

/// Gives every page without a `/MediaBox` (on it or inherited) US Letter,
/// which is what other readers assume, and returns how many it changed.
///
/// The box is mandatory, but files from sloppy generators omit it, and
/// pdf-extract `expect`s it: without this the page would be lost to a
/// contained panic. Only the text's vertical origin depends on it.
fn add_missing_media_boxes(doc: &mut Document) -> usize {
    use pdf_extract::Object;
    let missing: Vec<_> = doc
        .get_pages()
        .into_values()
        .filter(|&page_id| {
            // Walk up the page tree (bounded: a malformed tree may loop).
            let mut id = page_id;
            for _ in 0..32 {
                let Ok(dict) = doc.get_dictionary(id) else {
                    return true;
                };
                if dict.has(b"MediaBox") {
                    return false;
                }
                match dict.get(b"Parent").and_then(Object::as_reference) {
                    Ok(parent) => id = parent,
                    Err(_) => return true,
                }
            }
            true
        })
        .collect();
    let mut changed = 0;
    for page_id in missing {
        if let Ok(page) = doc.get_object_mut(page_id).and_then(Object::as_dict_mut) {
            let letter = [0, 0, 612, 792].map(Object::Integer).to_vec();
            page.set("MediaBox", Object::Array(letter));
            changed += 1;
        }
    }
    changed
}

/// Longest `/Parent` chain kept from a page to the root (lopdf bounds its
/// own page-tree walk at the same depth).
const MAX_TREE_DEPTH: usize = 256;

/// Removes every `/Parent` link that closes a cycle or lies deeper than
/// [`MAX_TREE_DEPTH`] above a page, and returns how many it removed.
///
/// pdf-extract looks up inherited page attributes (`/Resources`,
/// `/MediaBox`) by following `/Parent` until a node has the key, with no
/// visited set: a page without `/Resources` under a `/Parent` cycle spins
/// forever (a 578-byte file held a worker at 100% CPU), and a very long
/// chain recurses off the stack. After this every chain ends. Linear in the
/// tree: a node whose chain is known to end is not walked again.
fn cut_parent_cycles(doc: &mut Document) -> usize {
    use pdf_extract::Object;
    use std::collections::HashSet;
    let mut done: HashSet<pdf_extract::ObjectId> = HashSet::new();
    let mut cuts = Vec::new();
    for page_id in doc.page_iter().collect::<Vec<_>>() {
        let mut path = Vec::new();
        let mut on_path = HashSet::new();
        let mut id = page_id;
        loop {
            if done.contains(&id) {
                break;
            }
            if !on_path.insert(id) || path.len() >= MAX_TREE_DEPTH {
                // `id` was seen on this walk (a cycle) or the chain is too
                // long: the last node walked loses its /Parent.
                cuts.extend(path.last().copied());
                break;
            }
            path.push(id);
            match doc
                .get_dictionary(id)
                .and_then(|d| d.get(b"Parent"))
                .and_then(Object::as_reference)
            {
                Ok(parent) => id = parent,
                Err(_) => break,
            }
        }
        done.extend(path);
    }
    let mut removed = 0;
    for id in cuts {
        if let Ok(dict) = doc.get_object_mut(id).and_then(Object::as_dict_mut) {
            if dict.remove(b"Parent").is_some() {
                removed += 1;
            }
        }
    }
    removed
}

/// Inflates every page's `/FlateDecode` content stream with a cap of
/// `max_bytes` and stores it uncompressed; returns how many it inflated.
///
/// lopdf inflates without any bound, so a 2 MB stream that inflates to
/// 2 GiB would take the process with it. Inflating here, capped, turns the
/// bomb into [`PdfError::TooLarge`] before the crate sees it, and spares
/// the crate the inflate. Streams with other filters (or a predictor) are
/// left to the crate; the worker's memory limit covers those.
fn inflate_page_contents(doc: &mut Document, max_bytes: u64) -> Result<usize, PdfError> {
    use pdf_extract::Object;
    use std::io::Read as _;
    let mut ids: Vec<pdf_extract::ObjectId> = doc
        .page_iter()
        .flat_map(|page| doc.get_page_contents(page))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut inflated = 0;
    for id in ids {
        let Ok(stream) = doc.get_object_mut(id).and_then(Object::as_stream_mut) else {
            continue;
        };
        let plain_flate = match stream.dict.get(b"Filter") {
            Ok(Object::Name(n)) => n == b"FlateDecode",
            Ok(Object::Array(a)) => {
                a.len() == 1 && matches!(&a[0], Object::Name(n) if n == b"FlateDecode")
            }
            _ => false,
        };
        if !plain_flate || stream.dict.has(b"DecodeParms") {
            continue;
        }
        let mut out = Vec::new();
        let read = flate2::read::ZlibDecoder::new(stream.content.as_slice())
            .take(max_bytes.saturating_add(1))
            .read_to_end(&mut out);
        if out.len() as u64 > max_bytes {
            return Err(PdfError::TooLarge(format!(
                "a page content stream (object {} {}) inflates past {max_bytes} bytes",
                id.0, id.1
            )));
        }
        // A corrupt stream is left for the crate, which salvages what it
        // can (it also tries a raw inflate).
        if read.is_ok() {
            stream.set_plain_content(out);
            inflated += 1;
        }
    }
    Ok(inflated)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Each worker gets at least this many pages; a 1-page document runs on the
/// calling thread. (A thread costs ~50 µs, a page 2–20 ms.)
const MIN_PAGES_PER_WORKER: usize = 2;
/// Cap on worker threads for one document. Font parsing is ~90% of the time
/// (pdf-extract re-reads every font on every page), so pages parallelise
/// almost perfectly; the cap keeps one big PDF from monopolising a shared
/// machine where several papers are being prepared at once.
const MAX_WORKERS: usize = 4;

/// Pages per chunk of [`extract_in_chunks`].
const CHUNK_PAGES: usize = 64;

/// Extracts every page, [`CHUNK_PAGES`] at a time, with the root page
/// node's `/Kids` pointing at just that chunk's pages.
///
/// pdf-extract's `output_doc_page` enumerates the whole page tree to find
/// one page, so a document's extraction cost grows with the square of its
/// page count (measured, test build: 2000 one-line pages 4.4 s, 4000 pages
/// 21 s). Showing it one chunk at a time makes each lookup cost at most a
/// chunk: 2000 pages 0.13 s, 4000 0.26 s, 10000 0.67 s.
/// Inherited attributes are found through `/Parent`, which stays as it was.
/// Falls back to the whole tree when the root cannot be rewritten.
fn extract_in_chunks(doc: &mut Document, page_numbers: &[u32]) -> Vec<Result<String, String>> {
    use pdf_extract::Object;
    let pages = doc.get_pages();
    let root = doc
        .catalog()
        .and_then(|c| c.get(b"Pages"))
        .and_then(Object::as_reference)
        .ok();
    let ids: Option<Vec<_>> = page_numbers.iter().map(|n| pages.get(n).copied()).collect();
    let (Some(root), Some(ids)) = (root, ids) else {
        return extract_pages(doc, page_numbers);
    };
    if page_numbers.len() <= CHUNK_PAGES || doc.get_dictionary(root).is_err() {
        return extract_pages(doc, page_numbers);
    }
    let mut results = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK_PAGES) {
        let kids: Vec<Object> = chunk.iter().map(|&id| Object::Reference(id)).collect();
        if let Ok(node) = doc.get_object_mut(root).and_then(Object::as_dict_mut) {
            node.set("Kids", Object::Array(kids));
            node.set("Count", chunk.len() as i64);
        }
        let numbers: Vec<u32> = (1..=chunk.len() as u32).collect();
        results.extend(extract_pages(doc, &numbers));
    }
    results
}

/// Extracts the given pages, in their order, spreading them over a few
/// scoped threads. Each result is the page text or why the page failed.
fn extract_pages(doc: &Document, page_numbers: &[u32]) -> Vec<Result<String, String>> {
    let available = std::thread::available_parallelism().map_or(1, usize::from);
    let workers = available
        .min(MAX_WORKERS)
        .min(page_numbers.len() / MIN_PAGES_PER_WORKER)
        .max(1);
    if workers == 1 {
        return page_numbers.iter().map(|&n| extract_page(doc, n)).collect();
    }
    let mut results: Vec<Result<String, String>> =
        vec![Err("not extracted".to_string()); page_numbers.len()];
    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for w in 0..workers {
            // Interleaved, not chunked: the last pages (references,
            // appendix) are the cheap ones, so chunks would be unbalanced.
            let mine: Vec<usize> = (w..page_numbers.len()).step_by(workers).collect();
            let job = {
                let mine = mine.clone();
                move || {
                    mine.into_iter()
                        .map(|i| (i, extract_page(doc, page_numbers[i])))
                        .collect::<Vec<_>>()
                }
            };
            match std::thread::Builder::new()
                .name(format!("pdf-extract-{w}"))
                .spawn_scoped(scope, job)
            {
                Ok(handle) => handles.push(handle),
                // No thread to be had: do this share here instead.
                Err(_) => {
                    for i in mine {
                        results[i] = extract_page(doc, page_numbers[i]);
                    }
                }
            }
        }
        for handle in handles {
            // extract_page contains its own panics, so join only fails if
            // the thread died some other way; its pages stay Err.
            if let Ok(done) = handle.join() {
                for (i, r) in done {
                    results[i] = r;
                }
            }
        }
    });
    results
}

/// One page through pdf-extract's interpreter into a [`PageText`], with
/// panics contained.
fn extract_page(doc: &Document, page_number: u32) -> Result<String, String> {
    let mut sink = PageText::default();
    match contained(|| pdf_extract::output_doc_page(doc, &mut sink, page_number)) {
        Ok(Ok(())) => Ok(sink.finish()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(format!("parser panicked: {panic}")),
    }
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
    // message; the half-filled PageText of a failed page is dropped.
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string())
    })
}

// ---------------------------------------------------------------------------
// Glyphs to lines
// ---------------------------------------------------------------------------

/// A gap wider than this share of the font size between two glyphs on one
/// baseline is a word space. TeX's tightest justified inter-word space is
/// ~0.22 em and kerns stay under ~0.1 em; poppler uses 0.1 too.
const SPACE_GAP: f64 = 0.1;
/// A baseline moved by more than this share of the font size is a new line;
/// superscripts and subscripts (~0.3–0.45 em) stay on theirs.
const NEW_LINE: f64 = 0.7;
/// A downward move larger than this (in font sizes) is a new block:
/// headings, display maths, floats. Body lines are ~1.2 apart.
const NEW_BLOCK: f64 = 1.8;
/// Moving left on the same baseline by more than this many font sizes is a
/// jump to another column or box, not an accent or a kern.
const BACK_JUMP: f64 = 2.0;

/// Where the previous glyph ended, in its own baseline frame.
#[derive(Debug, Clone, Copy)]
struct Pen {
    /// Unit vector of the baseline direction (1, 0 for upright text).
    ux: f64,
    uy: f64,
    /// Coordinate along the baseline where the glyph's advance ends.
    end: f64,
    /// Coordinate across the baseline (the baseline's height).
    base: f64,
    /// Font size in user-space units.
    size: f64,
}

/// An `OutputDev` that rebuilds words and lines from glyph positions.
#[derive(Debug, Default)]
struct PageText {
    out: String,
    pen: Option<Pen>,
    /// A space glyph was drawn since the last visible glyph.
    space: bool,
    /// Baseline and size of the current word's glyphs while they all agree
    /// (`None` once they differ): tells a lone superscript marker.
    word: Option<(f64, f64)>,
}

impl PageText {
    fn newline(&mut self, block: bool) {
        let trimmed = self.out.trim_end_matches([' ', '\t']).len();
        self.out.truncate(trimmed);
        if self.out.is_empty() {
            return;
        }
        let want = if block { "\n\n" } else { "\n" };
        if block && self.out.ends_with('\n') && !self.out.ends_with("\n\n") {
            self.out.push('\n');
        } else if !self.out.ends_with('\n') {
            self.out.push_str(want);
        }
    }

    fn finish(self) -> String {
        let mut lines: Vec<&str> = Vec::new();
        let mut blank = false;
        for line in self.out.lines().map(str::trim_end) {
            if line.trim().is_empty() {
                blank = !lines.is_empty();
            } else {
                if blank {
                    lines.push("");
                    blank = false;
                }
                lines.push(line);
            }
        }
        lines.join("\n")
    }
}

impl OutputDev for PageText {
    fn begin_page(
        &mut self,
        _page_num: u32,
        _media_box: &MediaBox,
        _art_box: Option<(f64, f64, f64, f64)>,
    ) -> Result<(), OutputError> {
        Ok(())
    }

    fn end_page(&mut self) -> Result<(), OutputError> {
        Ok(())
    }

    /// `trm` maps text space to user space (row vectors: the glyph origin
    /// is `(m31, m32)`, the baseline direction `(m11, m12)`); `width` is
    /// the glyph advance in text-space units per unit of font size.
    fn output_character(
        &mut self,
        trm: &Transform,
        width: f64,
        _spacing: f64,
        font_size: f64,
        text: &str,
    ) -> Result<(), OutputError> {
        let scale_x = trm.m11.hypot(trm.m12);
        if !(scale_x.is_finite() && scale_x > 1e-9) {
            return Ok(()); // degenerate matrix: nothing visible to place
        }
        let (ux, uy) = (trm.m11 / scale_x, trm.m12 / scale_x);
        let area = (trm.m11 * trm.m22 - trm.m12 * trm.m21).abs().sqrt();
        let size = (font_size.abs() * area).max(0.01);
        let size = if size.is_finite() { size } else { 1.0 };
        let (x, y) = (trm.m31, trm.m32);
        let advance = (width * font_size.abs() * scale_x).max(0.0);

        if text.chars().all(char::is_whitespace) {
            if !text.is_empty() {
                self.space = true;
            }
            return Ok(());
        }

        if let Some(p) = self.pen {
            let same_direction = ux * p.ux + uy * p.uy > 0.99;
            // Position relative to the previous glyph, in its frame.
            let along = x * p.ux + y * p.uy;
            let across = -x * p.uy + y * p.ux;
            let h = size.max(p.size);
            let rise = across - p.base;
            if !same_direction || rise.abs() > NEW_LINE * h {
                // Up the page (next column, float) or a big drop is a block.
                let block = !same_direction || rise > 0.0 || -rise > NEW_BLOCK * h;
                self.newline(block);
            } else {
                let gap = along - p.end;
                // Scripts inside a word stay glued ("LaTeX", "x²", "word¹"),
                // like pdftotext; a word that is *only* a smaller raised or
                // lowered run is an affiliation / footnote marker, and the
                // text after it is a new word ("¹Institute" → "1 Institute").
                let small = size.min(p.size);
                let marker = self.word.is_some_and(|(base, marker_size)| {
                    marker_size < 0.85 * size && (base - across).abs() > 0.2 * size
                });
                if gap < -BACK_JUMP * h {
                    self.newline(true);
                } else if (self.space || gap > SPACE_GAP * small || marker)
                    && !self.out.ends_with([' ', '\n'])
                {
                    self.out.push(' ');
                }
            }
        }
        let base = -x * uy + y * ux;
        self.word = if self.pen.is_none() || self.out.ends_with([' ', '\n']) {
            Some((base, size))
        } else {
            self.word
                .filter(|&(b, s)| (b - base).abs() < 0.05 * s && (s - size).abs() < 0.05 * s)
        };
        for c in text.chars() {
            // Control codes come from fonts with broken encodings; they
            // would only confuse the tokeniser downstream.
            if !c.is_control() {
                self.out.push(c);
            }
        }
        self.space = false;
        self.pen = Some(Pen {
            ux,
            uy,
            end: x * ux + y * uy + advance,
            base,
            size,
        });
        Ok(())
    }

    fn begin_word(&mut self) -> Result<(), OutputError> {
        Ok(())
    }

    fn end_word(&mut self) -> Result<(), OutputError> {
        Ok(())
    }

    fn end_line(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
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

    #[test]
    fn finish_trims_and_collapses_blank_lines() {
        let t = PageText {
            out: "\n\n a  \n\n\n\nb\n\n".into(),
            ..Default::default()
        };
        assert_eq!(t.finish(), " a\n\nb");
    }
}
