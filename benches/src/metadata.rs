//! Source-file metadata for the query benchmark and the index memory
//! measurement: the metadata-cache seed's domain, with a realistic skew
//! (`main` in 1 % of files, 5,000 function names, 2,000 classes).

use cache_core::Cache;
use cache_core::index::Query;
use cache_core::{CacheBuilder, Pattern};

use crate::traces::Rng;

/// One file's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct FileMetadata {
    /// Its path, the key.
    pub path: String,
    /// `python`, `rust`, `javascript`, `go` or `java`.
    pub language: String,
    /// The functions it defines.
    pub functions: Vec<String>,
    /// The classes it defines.
    pub classes: Vec<String>,
    /// The documents it refers to.
    pub documents: Vec<String>,
}

const LANGS: [(&str, &str); 5] = [
    ("python", "py"),
    ("rust", "rs"),
    ("javascript", "js"),
    ("go", "go"),
    ("java", "java"),
];
const DIRS: [&str; 4] = ["src", "tests", "tools", "docs"];

fn below(rng: &mut Rng, n: u64) -> u64 {
    rng.bits() % n
}

/// `n` files, the same for the same `n`.
pub fn files(n: usize) -> Vec<FileMetadata> {
    let mut rng = Rng(42);
    (0..n)
        .map(|i| {
            let (language, ext) = LANGS[below(&mut rng, 5) as usize];
            let dir = DIRS[below(&mut rng, 4) as usize];
            let path = format!("{dir}/pkg{}/file{i}.{ext}", below(&mut rng, 200));
            let mut functions: Vec<String> = (0..1 + below(&mut rng, 4))
                .map(|_| format!("fn{}", below(&mut rng, 5_000)))
                .collect();
            if below(&mut rng, 100) == 0 {
                functions.push("main".into());
            }
            FileMetadata {
                path,
                language: language.into(),
                functions,
                classes: (0..below(&mut rng, 3))
                    .map(|_| format!("Class{}", below(&mut rng, 2_000)))
                    .collect(),
                documents: vec![format!("docs/guide{}.md", below(&mut rng, 50))],
            }
        })
        .collect()
}

/// A cache of `files` with the four indexes, bounded to hold them all.
pub fn indexed_cache(files: &[FileMetadata]) -> Cache<String, FileMetadata> {
    let c = with_indexes(CacheBuilder::new().capacity(files.len() * 2)).build();
    c.insert_many(files.iter().map(|f| (f.path.clone(), f.clone())));
    c
}

/// The four indexes of the seed's domain.
pub fn with_indexes(b: CacheBuilder<String, FileMetadata>) -> CacheBuilder<String, FileMetadata> {
    b.index("language", |m: &FileMetadata| vec![m.language.clone()])
        .index("function", |m: &FileMetadata| m.functions.clone())
        .index("class", |m: &FileMetadata| m.classes.clone())
        .index("document", |m: &FileMetadata| m.documents.clone())
}

/// The seed's query: python files defining `main` under `src/`, the first
/// `limit` by path.
pub fn python_mains(limit: usize) -> Query {
    Query::new()
        .eq("language", "python")
        .eq("function", "main")
        .matching(Pattern::new("src/*").expect("a valid pattern"))
        .limit(limit)
}

/// The same answer by a scan of every file: filter, sort, take.
pub fn scan_python_mains(files: &[FileMetadata], limit: usize) -> Vec<(String, FileMetadata)> {
    let mut hits: Vec<&FileMetadata> = files
        .iter()
        .filter(|f| {
            f.language == "python"
                && f.functions.iter().any(|x| x == "main")
                && f.path.starts_with("src/")
        })
        .collect();
    hits.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    hits.into_iter()
        .take(limit)
        .map(|f| (f.path.clone(), f.clone()))
        .collect()
}

/// Files defining class `name`, by index and by scan.
pub fn class_query(name: &str) -> Query {
    Query::new().eq("class", name)
}

/// [`class_query`]'s answer by a scan.
pub fn scan_class(files: &[FileMetadata], name: &str) -> Vec<(String, FileMetadata)> {
    let mut hits: Vec<&FileMetadata> = files
        .iter()
        .filter(|f| f.classes.iter().any(|c| c == name))
        .collect();
    hits.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    hits.into_iter()
        .map(|f| (f.path.clone(), f.clone()))
        .collect()
}
