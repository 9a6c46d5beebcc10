//! `revgen tokenize`, `score` and `export` against HF transformers (the reference implementation), real review
//! text, and a model hub served on loopback.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support::{hf_python, revgen, run_err, run_ok, shared_data};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture() -> PathBuf {
    root().join("trainer/tests/fixtures/tiny-gpt2")
}

fn assets() -> PathBuf {
    root().join("assets/gpt2")
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn tokenize_encodes_the_tags_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(&mut revgen(dir.path(), &["tokenize", "--model", "tiny", "<|startoftext|> 5|||Hi<|endoftext|>"]));
    let ids: Vec<u32> = out.split_whitespace().map(|s| s.parse().unwrap()).collect();
    assert_eq!(ids[..7], [27, 91, 9688, 1659, 5239, 91, 29], "<|startoftext|> is 7 ordinary tokens");
    assert_eq!(*ids.last().unwrap(), 50256, "<|endoftext|> is the special token");
    let listed = json(&run_ok(&mut revgen(dir.path(), &["tokenize", "--json", "Hi there"])));
    assert_eq!(listed, serde_json::json!([{"id": 17250, "token": "Hi"}, {"id": 612, "token": " there"}]));
}

/// ≥ 200 real review records, tagged like training data, tokenize to the same ids as HF's GPT2TokenizerFast.
#[test]
fn tokenizer_matches_transformers_on_real_reviews() {
    let emoji = |s: &str| s.chars().any(|c| c as u32 >= 0x1F000 || (0x2600..0x27C0).contains(&(c as u32)));
    let entity = |s: &str| s.contains("&#") || s.contains("&amp;") || s.contains("&quot;");
    let mut texts: Vec<String> = Vec::new();
    for file in [
        "amazon_reviews_us_Electronics_v1_00.head10000.tsv",
        "amazon_reviews_us_Digital_Video_Games_v1_00.head10000.tsv",
    ] {
        let tsv = std::fs::read_to_string(shared_data(&format!("amazon-us-reviews-tsv/{file}"))).unwrap();
        let records: Vec<String> = tsv
            .lines()
            .skip(1)
            .filter_map(|line| {
                let f: Vec<&str> = line.split('\t').collect();
                (f.len() == 15).then(|| format!("<|startoftext|> {}|||{}|||{}<|endoftext|>", f[7], f[12], f[13]))
            })
            .collect();
        // Per file: the first 100, every record with emoji, and the first 40 with HTML entities and with other
        // non-ASCII text.
        let mut picked: Vec<usize> = (0..100).collect();
        picked.extend((0..records.len()).filter(|&i| emoji(&records[i])));
        picked.extend((100..records.len()).filter(|&i| entity(&records[i])).take(40));
        picked.extend((100..records.len()).filter(|&i| !records[i].is_ascii() && !emoji(&records[i])).take(40));
        picked.sort_unstable();
        picked.dedup();
        texts.extend(picked.into_iter().map(|i| records[i].clone()));
    }
    assert!(texts.len() >= 200, "only {} texts", texts.len());
    assert!(texts.iter().filter(|s| emoji(s)).count() >= 50, "too few texts with emoji");
    assert!(texts.iter().filter(|s| entity(s)).count() >= 80, "too few texts with HTML entities");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("texts.txt");
    std::fs::write(&file, texts.iter().map(|t| format!("{t}\n")).collect::<String>()).unwrap();
    let ours =
        run_ok(&mut revgen(dir.path(), &["tokenize", "--model", assets().to_str().unwrap(), "--file", "texts.txt"]));
    let theirs = hf_python(&["tokenize", assets().to_str().unwrap(), file.to_str().unwrap()]);
    let (ours, theirs): (Vec<_>, Vec<_>) = (ours.lines().collect(), theirs.lines().collect());
    assert_eq!(ours.len(), texts.len());
    assert_eq!(theirs.len(), texts.len());
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a, b, "text {i} tokenizes differently: {}", texts[i]);
    }
}

#[test]
fn score_reports_the_loss_transformers_computes() {
    let reference = json(&std::fs::read_to_string(fixture().join("reference.json")).unwrap());
    let text = &reference["texts"][0];
    let dir = tempfile::tempdir().unwrap();
    let model = fixture();
    let score = json(&run_ok(&mut revgen(
        dir.path(),
        &["score", "--model", model.to_str().unwrap(), "--text", text["text"].as_str().unwrap()],
    )));
    let expected = text["loss"].as_f64().unwrap();
    assert_eq!(score["tokens"], text["ids"].as_array().unwrap().len());
    let loss = score["loss"].as_f64().unwrap();
    assert!(((loss - expected) / expected).abs() <= 1e-5, "loss {loss} vs transformers {expected}");
    assert!((score["perplexity"].as_f64().unwrap() - loss.exp()).abs() < 1e-6 * loss.exp());
    assert!(score.get("per_token").is_none());

    // --file and --per-token: the same text from a file, with one loss per predicted token.
    std::fs::write(dir.path().join("review.txt"), text["text"].as_str().unwrap()).unwrap();
    let detailed = json(&run_ok(&mut revgen(
        dir.path(),
        &["score", "--model", model.to_str().unwrap(), "--file", "review.txt", "--per-token"],
    )));
    assert_eq!(detailed["loss"], score["loss"]);
    let per_token = detailed["per_token"].as_array().unwrap();
    assert_eq!(per_token.len(), text["per_token_loss"].as_array().unwrap().len());
    assert_eq!(per_token.last().unwrap()["token"], "<|endoftext|>");
}

#[test]
fn exported_models_load_in_transformers_with_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exported");
    let listed =
        run_ok(&mut revgen(dir.path(), &["export", "--checkpoint", fixture().to_str().unwrap(), "--out", "exported"]));
    assert!(listed.contains("model.safetensors") && listed.contains("tokenizer.json"), "{listed}");
    let check = json(&hf_python(&["logits", out.to_str().unwrap(), fixture().to_str().unwrap()]));
    assert_eq!(check["ids_match"], true, "transformers' tokenizer from the export gives other ids");
    let diff = check["max_logit_diff"].as_f64().unwrap();
    assert!(diff <= 1e-5, "transformers' logits from the exported model differ by {diff}");
}

#[test]
fn bad_models_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = run_err(&mut revgen(dir.path(), &["score", "--model", "gpt3", "--text", "hi there"]));
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(stderr.contains("gpt3") && stderr.contains("gpt2-medium"), "{stderr}");

    std::fs::copy(fixture().join("config.json"), dir.path().join("config.json")).unwrap();
    let err = run_err(&mut revgen(dir.path(), &["score", "--model", ".", "--text", "hi there"]));
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(stderr.contains("model.safetensors") && stderr.contains("not found"), "{stderr}");
}

/// A static file server on loopback standing in for huggingface.co: it serves a directory in the hub's URL layout
/// and, like the hub, names the commit in an `X-Repo-Commit` header.
struct Hub {
    child: Child,
    endpoint: String,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

const HUB_SERVER: &str = r#"
import functools, http.server, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    def end_headers(self):
        self.send_header("X-Repo-Commit", sys.argv[2])
        super().end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=sys.argv[1]))
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

fn serve(dir: &Path) -> Hub {
    let mut child = Command::new("python3")
        .args(["-c", HUB_SERVER, dir.to_str().unwrap(), COMMIT])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the python3 hub server");
    // The server picks a free port and prints it once it listens.
    let mut port = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut port).unwrap();
    Hub { child, endpoint: format!("http://127.0.0.1:{}/", port.trim()) }
}

#[test]
fn presets_come_from_the_hub_cache_or_a_download() {
    let dir = tempfile::tempdir().unwrap();
    // The hub's URL layout: {endpoint}/{repo}/resolve/main/{file}, holding the fixture under the name gpt2.
    let files = dir.path().join("hub/openai-community/gpt2/resolve/main");
    std::fs::create_dir_all(&files).unwrap();
    for name in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture().join(name), files.join(name)).unwrap();
    }
    std::fs::copy(assets().join("encoder.json"), files.join("vocab.json")).unwrap();
    std::fs::copy(assets().join("vocab.bpe"), files.join("merges.txt")).unwrap();
    let hf_home = dir.path().join("hf-home");
    let score = |extra_env: &[(&str, &str)]| {
        let mut cmd = revgen(dir.path(), &["score", "--model", "gpt2", "--text", "Hello world, it works"]);
        cmd.env("HF_HOME", &hf_home).env_remove("HF_HUB_CACHE").env_remove("HF_HUB_OFFLINE");
        cmd.envs(extra_env.iter().copied());
        cmd
    };
    let direct = json(&run_ok(&mut revgen(
        dir.path(),
        &["score", "--model", fixture().to_str().unwrap(), "--text", "Hello world, it works"],
    )));

    // Offline with an empty cache: a clear error that lists the files.
    let err = run_err(&mut score(&[("HF_HUB_OFFLINE", "1")]));
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(
        stderr.contains("HF_HUB_OFFLINE") && stderr.contains("model.safetensors") && stderr.contains("merges.txt"),
        "{stderr}"
    );

    // Online: downloads into the cache in HF's layout.
    {
        let hub = serve(&dir.path().join("hub"));
        let downloaded = json(&run_ok(&mut score(&[("HF_ENDPOINT", &hub.endpoint)])));
        assert_eq!(downloaded, direct);
    }
    // The cache layout huggingface_hub uses: snapshots/<commit>/ and refs/main naming the commit.
    let repo = hf_home.join("hub/models--openai-community--gpt2");
    assert!(repo.join("snapshots").join(COMMIT).join("model.safetensors").is_file());
    assert_eq!(std::fs::read_to_string(repo.join("refs/main")).unwrap(), COMMIT);

    // Offline again, with the server gone: served from the cache.
    let cached = json(&run_ok(&mut score(&[("HF_HUB_OFFLINE", "1")])));
    assert_eq!(cached, direct);
}
