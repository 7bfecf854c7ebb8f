using ProxySelection.Engine.Diagnostics;
using System.Text;
using ProxySelection.Host.Control;
using FsProperty = FsCheck.NUnit.PropertyAttribute;

namespace ProxySelection.Host.Tests.Control;

public sealed class ControlProtocolTests
{
    [TestCase("{\"command\":\"status\"}", nameof(ControlCommand.Status))]
    [TestCase("{\"command\":\"cache-show\"}", nameof(ControlCommand.CacheShow))]
    [TestCase("{\"command\":\"cache-flush\"}", nameof(ControlCommand.CacheFlush))]
    [TestCase(" { \"command\" : \"reload\", \"extra\": [1, 2] } ", nameof(ControlCommand.Reload))]
    public void TryParseRequest_KnownCommand_Parsed(string line, string expected)
    {
        Assert.That(ControlProtocol.TryParseRequest(Encoding.UTF8.GetBytes(line), out var command, out var error), Is.True, error);
        Assert.That(command.ToString(), Is.EqualTo(expected));
    }

    [TestCase("garbage", "malformed JSON")]
    [TestCase("", "malformed JSON")]
    [TestCase("{\"command\":\"status\"", "malformed JSON")]
    [TestCase("[\"status\"]", "a request is a JSON object")]
    [TestCase("\"status\"", "a request is a JSON object")]
    [TestCase("{}", "missing \"command\"")]
    [TestCase("{\"command\":\"status\",\"command\":\"reload\"}", "malformed JSON")]
    [TestCase("{\"command\":5}", "missing \"command\" (a string)")]
    [TestCase("{\"command\":null}", "missing \"command\"")]
    [TestCase("{\"command\":\"Status\"}", "unknown command \"Status\"; expected one of status, cache-show, cache-flush, reload")]
    [TestCase("{\"command\":\"rm -rf\"}", "unknown command")]
    public void TryParseRequest_BadRequest_FalseWithReason(string line, string reason)
    {
        Assert.That(ControlProtocol.TryParseRequest(Encoding.UTF8.GetBytes(line), out _, out var error), Is.False);
        Assert.That(error, Does.StartWith(reason));
    }

    [Test]
    public void TryParseRequest_InvalidUtf8_FalseWithReason()
    {
        Assert.That(ControlProtocol.TryParseRequest([(byte)'{', 0xC3, 0x28, (byte)'}'], out _, out var error), Is.False);
        Assert.That(error, Does.StartWith("malformed JSON"));
    }

    [Test]
    public void TryParseRequest_LongerThanTheLimit_RefusedBeforeParsing()
    {
        var line = Encoding.UTF8.GetBytes("{\"command\":\"status\",\"pad\":\"" + new string('x', ControlProtocol.MaxRequestBytes) + "\"}");

        Assert.That(ControlProtocol.TryParseRequest(line, out _, out var error), Is.False);
        Assert.That(error, Is.EqualTo($"request longer than {ControlProtocol.MaxRequestBytes} bytes"));
    }

#pragma warning disable NUnit1027 // FsCheck supplies the arguments.
    [FsProperty(MaxTest = 1000)]
    public bool TryParseRequest_AnyBytes_NeverThrowsAndExplainsEveryRefusal(byte[] line) =>
        ControlProtocol.TryParseRequest(line ?? [], out _, out var error) ? error.Length == 0 : error.Length > 0;
#pragma warning restore NUnit1027

    [Test]
    public void FormatRequest_EveryCommand_RoundTrips()
    {
        foreach (var command in Enum.GetValues<ControlCommand>())
        {
            Assert.That(ControlProtocol.TryParseRequest(Encoding.UTF8.GetBytes(ControlProtocol.FormatRequest(command)), out var parsed, out _), Is.True);
            Assert.That(parsed, Is.EqualTo(command));
        }
    }

    [Test]
    public void FormatOk_Record_OneLineSnakeCaseBesideOk()
    {
        var line = Encoding.UTF8.GetString(ControlProtocol.FormatOk(new ReloadReply(false, "proxysel: reload refused; it's \"fixed\"")));

        Assert.That(line, Is.EqualTo("{\"ok\":true,\"applied\":false,\"message\":\"proxysel: reload refused; it's \\\"fixed\\\"\"}\n"));
        Assert.That(ControlProtocol.TryParseReply(line.TrimEnd('\n'), out var reply, out _), Is.True);
        Assert.That((string?)reply["message"], Is.EqualTo("proxysel: reload refused; it's \"fixed\""));
    }

    [Test]
    public void FormatOk_EveryReplyTheDaemonSends_SerializedFromGeneratedMetadataWithoutReflection()
    {
        // What StatusReplies builds, every nested type and an optional field set (Mode) and unset (Reason, Token).
        var status = new StatusReply(
            new DaemonStatus("running", "downgrade", "implicit", "first-proxy", 7, 100, [80, 443], 1.5, 1, 0, 0),
            [
                new ConnectionStatus("198.18.1.2:40000", "198.18.3.2:80", "downgrade", null, 0.25, 10, 20, "client", "Active", "0000abcd", 2,
                    [new SubflowStatus("198.18.3.2:80", "198.18.1.2:40000", "established", 300)]) { Mode = "host-configured" },
            ],
            new Dictionary<string, long> { ["syns"] = 3, ["kernel_passed"] = 2 },
            new CacheSummary(1, 1024, 2, 1, 0, 0, 0.6667));
        var cache = new CacheReply([new CacheEntryStatus("198.18.3.2:80", "ProxyBeyond", 9, 1.0, 59.0)], new CacheSummary(1, 1024, 0, 1, 0, 0, null));

        var lines = new[] { ControlProtocol.FormatOk(status), ControlProtocol.FormatOk(cache), ControlProtocol.FormatOk(new FlushReply(4)) }
            .Select(Encoding.UTF8.GetString).ToList();

        Assert.That(ControlProtocol.Json.TypeInfoResolver, Is.SameAs(ControlJsonContext.Default), "no reflection fallback behind the context");
        Assert.That(lines[0], Does.StartWith("{\"ok\":true,\"daemon\":{\"state\":\"running\",\"role\":\"downgrade\"")
            .And.Contain("\"ports\":[80,443]").And.Contain("\"mode\":\"host-configured\"").And.Contain("\"rtt_us\":300")
            .And.Contain("\"kernel_passed\":2").And.Contain("\"hit_ratio\":0.6667").And.Contain("\"reason\":null"));
        Assert.That(lines[1], Does.Contain("\"entries\":[{\"destination\":\"198.18.3.2:80\",\"state\":\"ProxyBeyond\",\"proxy_id\":9").And.Contain("\"hit_ratio\":null"));
        Assert.That(lines[2], Is.EqualTo("{\"ok\":true,\"removed\":4}\n"));
    }

    [Test]
    public void FormatOk_TypeWithoutGeneratedMetadata_RefusedNotReflected() =>
        Assert.Throws<NotSupportedException>(() => ControlProtocol.FormatOk(new { Unlisted = 1 }));

    [Test]
    public void DaemonRuntimeConfiguration_ReflectionBasedJsonDisabled()
    {
        // Copied beside the tests from the Host project: what the JIT daemon of the integration tests runs with.
        var config = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "proxysel.runtimeconfig.json"));

        Assert.That(config, Does.Match("\"System.Text.Json.JsonSerializer.IsReflectionEnabledByDefault\":\\s*false"));
    }

    [Test]
    public void FormatError_ParsedByTheClient_FalseWithTheServersText()
    {
        var line = Encoding.UTF8.GetString(ControlProtocol.FormatError("unknown command \"x\""));

        Assert.That(line, Does.EndWith("\n").And.Not.Contains("\n{"));
        Assert.That(ControlProtocol.TryParseReply(line.TrimEnd('\n'), out _, out var error), Is.False);
        Assert.That(error, Is.EqualTo("unknown command \"x\""));
    }

    [TestCase("", "malformed reply")]
    [TestCase("[1]", "malformed reply: not a JSON object")]
    [TestCase("{\"ok\":false}", "the reply carries no error text")]
    public void TryParseReply_Malformed_FalseWithReason(string line, string reason)
    {
        Assert.That(ControlProtocol.TryParseReply(line, out _, out var error), Is.False);
        Assert.That(error, Does.StartWith(reason));
    }
}
