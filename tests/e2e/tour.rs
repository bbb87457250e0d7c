//! README's three-command tour, read from README.md and run as written
//! (with the resnet18 weights placed where the download puts them: the
//! real file cannot be fetched here), so the tour cannot drift from what
//! the binary does.

use std::path::Path;

use serde_json::Value;

use crate::named_weights::seeded_weights;
use crate::util::Sandbox;

/// How the tour names the photos folder's absolute path.
const REALPATH: &str = "\"$(realpath photos)\"";

/// The commands of README's tour block, each split into words, with
/// `"$(realpath photos)"` kept as one word.
fn tour_commands() -> Vec<Vec<String>> {
    let readme =
        fs_err::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let tour = readme
        .split("## A three-command tour")
        .nth(1)
        .expect("README has a tour section");
    let block = tour
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the tour has a sh block");
    block
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .map(|line| {
            line.replace(REALPATH, "\u{0}")
                .split_whitespace()
                .map(|word| word.replace('\u{0}', REALPATH))
                .collect()
        })
        .collect()
}

#[test]
fn readme_tour_runs_as_written() {
    let commands = tour_commands();
    assert_eq!(commands.len(), 3, "{commands:?}");
    let sandbox = Sandbox::new();
    let photos = sandbox.dir.path().join("photos");
    fs_err::create_dir_all(&photos).unwrap();
    for (index, side) in [(0, 64u32), (1, 80)] {
        image::RgbImage::from_fn(side, side + 16, |x, y| {
            image::Rgb([(x * 3) as u8, (y * 2 + index * 40) as u8, 120])
        })
        .save(photos.join(format!("photo{index}.jpg")))
        .unwrap();
    }
    // Where `zoo models download resnet18-imagenet-torch` puts torchvision's
    // file (its name is the one torchvision's named weights point at).
    fs_err::create_dir_all(sandbox.zoo_dir()).unwrap();
    fs_err::write(
        sandbox.zoo_dir().join("resnet18-f37072fd.pth"),
        seeded_weights("resnet18", 1.0),
    )
    .unwrap();
    let realpath = fs_err::canonicalize(&photos).unwrap();
    let mut outputs = Vec::new();
    for words in &commands {
        assert_eq!(words[0], "zoo", "{words:?}");
        let args: Vec<String> = words[1..]
            .iter()
            .map(|word| {
                if word == REALPATH {
                    realpath.display().to_string()
                } else {
                    word.clone()
                }
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = sandbox
            .command(&args)
            .current_dir(sandbox.dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "`{}` failed: {}",
            words.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        outputs.push(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    // 1. The listing names the model the tour applies, as downloaded.
    let listing = outputs[0]
        .lines()
        .find(|line| line.contains("resnet18-imagenet-torch"))
        .expect("`models list --tags classification` lists resnet18");
    assert!(
        listing.contains('✓') || listing.to_lowercase().contains("yes"),
        "{listing}"
    );
    // 3. One JSON line per image, each with a FiftyOne Classification.
    let export = fs_err::read_to_string(sandbox.dir.path().join("predictions.jsonl")).unwrap();
    let lines: Vec<Value> = export
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{export}");
    for sample in &lines {
        assert!(
            sample["filepath"]
                .as_str()
                .unwrap()
                .starts_with(&*realpath.to_string_lossy())
        );
        assert_eq!(sample["predictions"]["_cls"], "Classification", "{sample}");
        assert!(sample["predictions"]["label"].is_string(), "{sample}");
    }
}
