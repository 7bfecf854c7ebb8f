using ProxySelection.Lab;

namespace ProxySelection.Lab.Tests;

/// <summary>The Lab's forward over Interception's ProcessCommandRunner: its exceptions and its result.</summary>
[TestFixture]
public sealed class LabCommandTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

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
