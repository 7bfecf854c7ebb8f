using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using ProxySelection.Host.Hosting;

namespace ProxySelection.Host.Tests.Hosting;

public sealed class PlainConsoleFormatterTests
{
    private static string Write(string message, Exception? exception = null)
    {
        var output = new StringWriter();
        var entry = new LogEntry<string>(LogLevel.Warning, "ProxySelection.Engine.ProxyEngine", new EventId(100), message, exception, (s, _) => s);
        new PlainConsoleFormatter().Write(entry, null, output);
        return output.ToString();
    }

    [Test]
    public void Write_Message_AloneOnOneLine() =>
        Assert.That(Write("syn 198.18.1.2:40000 -> 198.18.3.2:80 Tcp: Pass (ServerSpeaksMptcp)"),
            Is.EqualTo("syn 198.18.1.2:40000 -> 198.18.3.2:80 Tcp: Pass (ServerSpeaksMptcp)\n"), "no level, category, event id or timestamp");

    [Test]
    public void Write_Exception_FollowsTheMessage()
    {
        var text = Write("proxysel: failed", new InvalidOperationException("boom"));

        Assert.That(text, Does.StartWith("proxysel: failed\nSystem.InvalidOperationException: boom"));
    }

    [Test]
    public void Write_EmptyMessage_NothingWritten() => Assert.That(Write(""), Is.Empty);
}
