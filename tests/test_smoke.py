from execbox.models import JobStatus


def test_hello(client, invariants):
    result = client.run({"main.py": "print('hello')"})
    assert result.stdout == "hello\n"
    invariants.check(result, JobStatus.SUCCEEDED)
