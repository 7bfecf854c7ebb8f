namespace ProxySelection.Host.Tests;

public class CliTests
{
    [Test]
    public void Help_ExitsZero()
    {
        Assert.That(Cli.Run(["--help"]), Is.Zero);
    }
}
