using ProxySelection.Interception.Rules;

namespace ProxySelection.Interception.Tests.Rules;

/// <summary>The one process runner (Interception's ProcessCommandRunner): output, exit code, timeout, missing tool.</summary>
[TestFixture]
public sealed class ProcessCommandRunnerTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    [Test]
    public async Task ExecuteAsync_StdinAndNonZeroExit_ReturnsOutputAndExitCode()
    {
        var r = await ProcessCommandRunner.ExecuteAsync("sh", ["-c", "cat; echo err >&2; exit 3"], "hi", Timeout, CancellationToken.None)
            .WaitAsync(Timeout);

        Assert.That(r, Is.EqualTo(new CommandOutcome(3, "hi", "err\n")));
    }

    [Test]
    public void ExecuteAsync_StillRunningAtTimeout_KilledAndTimeoutException()
    {
        Assert.That(async () => await ProcessCommandRunner.ExecuteAsync("sleep", ["30"], null, TimeSpan.FromMilliseconds(100), CancellationToken.None)
            .WaitAsync(Timeout), Throws.InstanceOf<TimeoutException>());
    }

    [Test]
    public async Task RunAsync_ToolMissing_Exit127LikeAShell()
    {
        var r = await new ProcessCommandRunner().RunAsync("no-such-tool-psel", [], null, CancellationToken.None).WaitAsync(Timeout);

        Assert.That(r.ExitCode, Is.EqualTo(127));
        Assert.That(r.StdErr, Does.StartWith("no-such-tool-psel:"));
    }
}
