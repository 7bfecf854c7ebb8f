using System.Net;
using Microsoft.Extensions.Logging;
using ProxySelection.Engine;
using ProxySelection.Negotiation;
using ProxySelection.Relay;

namespace ProxySelection.Engine.Tests;

/// <summary>The engine's and the daemon's lines keep the exact text the demo (ProxyTrace) and the integration tests parse.</summary>
public sealed class ProxyEngineLogTests
{
    private static readonly IPEndPoint Client = IPEndPoint.Parse("198.18.1.2:40000");
    private static readonly IPEndPoint Server = IPEndPoint.Parse("198.18.3.2:80");

    private static string Line(Action<ILogger> log)
    {
        var lines = new List<string>();
        log(new LineLogger(lines.Add));
        return lines.Single();
    }

    [Test]
    public void Syn_Decision_ReadsAsBefore() =>
        Assert.That(Line(l => ProxyEngineLog.Syn(l, Client, Server, SynKind.MpCapable, "HoldAndProbe", nameof(DecisionReason.CacheMiss))),
            Is.EqualTo("syn 198.18.1.2:40000 -> 198.18.3.2:80 MpCapable: HoldAndProbe (CacheMiss)"));

    [Test]
    public void JoinSyn_Token_EightHexDigits() =>
        Assert.That(Line(l => ProxyEngineLog.JoinSyn(l, Client, Server, SynKind.MpJoin, 0xabc, "InterceptJoin", "JoinTokenOwned")),
            Is.EqualTo("syn 198.18.1.2:40000 -> 198.18.3.2:80 MpJoin token=00000abc: InterceptJoin (JoinTokenOwned)"));

    [Test]
    public void HoldResolved_Milliseconds_OneDecimal() =>
        Assert.That(Line(l => ProxyEngineLog.HoldResolved(l, Client, Server, HoldOutcome.Intercept, DecisionReason.ServerTcpOnly, 3.25)),
            Is.EqualTo("hold 198.18.1.2:40000 -> 198.18.3.2:80: Intercept (ServerTcpOnly) after 3.2 ms").Or.EqualTo("hold 198.18.1.2:40000 -> 198.18.3.2:80: Intercept (ServerTcpOnly) after 3.3 ms"));

    [Test]
    public void ProbeAnswered_WithAndWithoutSignal_ReadsAsBefore()
    {
        Assert.That(Line(l => ProxyEngineLog.ProbeAnswered(l, 7, Server, false, "")), Is.EqualTo("probe 7 to 198.18.3.2:80: answered, mp_capable=False"));
        Assert.That(Line(l => ProxyEngineLog.ProbeAnswered(l, 7, Server, true, " signal=Claim proxy=2")),
            Is.EqualTo("probe 7 to 198.18.3.2:80: answered, mp_capable=True signal=Claim proxy=2"));
    }

    [Test]
    public void Relayed_Result_ReadsAsBefore() =>
        Assert.That(Line(l => ProxyEngineLog.Relayed(l, Client, Server, CloseReason.Completed, 82, 16632, 2, MptcpStatus.Active, MptcpStatus.NotMptcp,
                UpstreamConnectStatus.Connected, 1234.4)),
            Is.EqualTo("relay 198.18.1.2:40000 -> 198.18.3.2:80: Completed up=82 down=16632 subflows=2 client=Active upstream=NotMptcp connect=Connected in 1234 ms"));

    [Test]
    public void Accepted_Token_ReadsAsBefore() =>
        Assert.That(Line(l => ProxyEngineLog.Accepted(l, Client, Server, 0x1234abcd)),
            Is.EqualTo("accepted 198.18.1.2:40000 -> 198.18.3.2:80 token=1234abcd"));
}
