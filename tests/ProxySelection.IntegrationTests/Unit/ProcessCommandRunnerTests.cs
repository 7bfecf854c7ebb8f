using ProxySelection.Interception.Rules;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Unit;

/// <summary>The one process runner (Interception's ProcessCommandRunner) and the Lab's forward over it.</summary>
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

    [Test]
    public void LabCommandRunAsync_ToolMissingOrTimeout_ThrowsLabException()
    {
        Assert.That(async () => await LabCommand.RunAsync("no-such-tool-psel", []).WaitAsync(Timeout),
            Throws.InstanceOf<LabException>().With.Message.Contains("cannot start"));
        Assert.That(async () => await LabCommand.RunAsync("sleep", ["30"], TimeSpan.FromMilliseconds(100)).WaitAsync(Timeout),
            Throws.InstanceOf<LabException>().With.Message.Contains("did not finish"));
    }

    [Test]
    public async Task LabCommandRunAsync_Success_ResultNamesTheCommand()
    {
        var r = await LabCommand.RunAsync("echo", ["a b", "c"]).WaitAsync(Timeout);

        Assert.That(r, Is.EqualTo(new CommandResult("echo 'a b' c", 0, "a b c\n", "")));
    }
}
