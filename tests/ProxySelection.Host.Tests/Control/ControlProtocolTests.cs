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
