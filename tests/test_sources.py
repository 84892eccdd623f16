import pytest

from registry.sources import SourceError, validate_source

ROOTS = ["file:///srv/models", "s3://ml-bucket/models"]
RUN = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    "source, stored",
    [
        ("models:/m-0123456789abcdef0123456789abcdef", "models:/m-0123456789abcdef0123456789abcdef"),
        ("models:/iris/3", "models:/iris/3"),
        ("models:/iris@production", "models:/iris@production"),
        (f"runs:/{RUN}/model", f"runs:/{RUN}/model"),
        ("file:///srv/models/iris/1", "file:///srv/models/iris/1"),
        ("/srv/models/iris/1", "file:///srv/models/iris/1"),
        ("s3://ml-bucket/models/iris/1", "s3://ml-bucket/models/iris/1"),
    ],
)
def test_accepted_sources(source, stored):
    assert validate_source(source, allowed_roots=ROOTS) == stored


@pytest.mark.parametrize(
    "source, reason",
    [
        ("", "required"),
        ("/etc/passwd", "outside the allowed roots"),
        ("file:///srv/modelsX/iris", "outside the allowed roots"),  # prefix, not a parent
        ("/srv/models/../secrets", "'..'"),
        ("file:///srv/models/%2e%2e/secrets", "'..'"),
        ("file:///srv/models/%252e%252e/secrets", "'..'"),  # double encoding
        ("file:///srv/models/%2E%2E%2Fsecrets", "'..'"),
        ("file:///srv/models/a%2fb", "percent-encode"),
        ("s3://ml-bucket/models/a#/../../x", "'..'"),
        ("s3://ml-bucket/models/a#frag", "'#', ';' or '?'"),
        ("s3://ml-bucket/models/a;x=1", "'#', ';' or '?'"),
        ("s3://ml-bucket/models/a?versionId=1", "'#', ';' or '?'"),
        ("s3://ml-bucket/models/a%23frag", "percent-encoding"),
        ("http://attacker.example/model", "Scheme 'http' is not allowed"),
        ("ftp://ml-bucket/models/a", "Scheme 'ftp' is not allowed"),
        ("file://attacker/srv/models/a", "must be local"),
        ("s3://user:secret@ml-bucket/models/a", "credentials"),
        ("relative/model", "Relative paths"),
        ("models:/iris", "models:/<name>/<version>"),
        ("models://profile@databricks/iris/1", "no host"),
        ("runs:/not-a-run-id/model", "32-character"),
        (f"runs:/{RUN}", "artifact path"),
        ("C:\\models\\iris", "backslash"),
        ("file:///srv/models/a\x00b", "control character"),
        ("x" * 1001, "longer than"),
    ],
)
def test_refused_sources_say_why(source, reason):
    with pytest.raises(SourceError, match=None) as info:
        validate_source(source, allowed_roots=ROOTS)
    assert reason in str(info.value)


def test_symlink_out_of_a_root_is_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(SourceError, match="outside the allowed roots"):
        validate_source(f"{root}/link/model", allowed_roots=[root.as_uri()])
