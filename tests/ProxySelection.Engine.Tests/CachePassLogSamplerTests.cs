using System.Net;
using Microsoft.Extensions.Time.Testing;
using ProxySelection.Engine;
using ProxySelection.Negotiation;

namespace ProxySelection.Engine.Tests;

public sealed class CachePassLogSamplerTests
{
    private static readonly DestinationKey Server = DestinationKey.From(IPEndPoint.Parse("198.18.3.2:80"));
    private static readonly DestinationKey Other = DestinationKey.From(IPEndPoint.Parse("198.18.3.3:80"));

    [Test]
    public void AtInformation_SecondPassToSameDestinationWithinWindow_False()
    {
        var sampler = new CachePassLogSampler(new FakeTimeProvider());

        Assert.That(sampler.AtInformation(Server), Is.True, "the first pass from the cache is logged");
        Assert.That(sampler.AtInformation(Server), Is.False, "the next one in the window goes to Debug");
        Assert.That(sampler.AtInformation(Other), Is.True, "another destination has its own line");
    }

    [Test]
    public void AtInformation_AfterTheWindow_TrueAgain()
    {
        var time = new FakeTimeProvider();
        var sampler = new CachePassLogSampler(time);
        sampler.AtInformation(Server);

        time.Advance(CachePassLogSampler.Window);

        Assert.That(sampler.AtInformation(Server), Is.True);
    }

    [Test]
    public void AtInformation_MoreDestinationsThanRemembered_ClearsAndLogsAgain()
    {
        var sampler = new CachePassLogSampler(new FakeTimeProvider());
        sampler.AtInformation(Server);
        for (int i = 0; i < CachePassLogSampler.MaxDestinations; i++)
        {
            sampler.AtInformation(new DestinationKey([198, 19, (byte)(i >> 8), (byte)i], 80));
        }

        Assert.That(sampler.AtInformation(Server), Is.True, "forgotten when the memory was cleared");
    }

    [TestCase(DecisionReason.ServerSpeaksMptcp, true)]
    [TestCase(DecisionReason.ServerTcpOnly, true)]
    [TestCase(DecisionReason.ProxyBeyond, true)]
    [TestCase(DecisionReason.ProbeFailedRecently, true)]
    [TestCase(DecisionReason.ProbedByOther, true)]
    [TestCase(DecisionReason.NotSelected, false)]
    [TestCase(DecisionReason.JoinTokenForeign, false)]
    [TestCase(DecisionReason.HeldUpstream, false)]
    [TestCase(DecisionReason.AtCapacity, false)]
    public void IsRoutineCachePass_PassOfAClientSyn_OnlyForCacheReasons(DecisionReason reason, bool expected)
    {
        var pass = new SynDecision { Verdict = SynVerdict.Pass, Reason = reason };

        Assert.That(CachePassLogSampler.IsRoutineCachePass(pass, signal: null), Is.EqualTo(expected));
    }

    [Test]
    public void IsRoutineCachePass_InterceptOrSignalledSyn_False()
    {
        var intercept = new SynDecision { Verdict = SynVerdict.Intercept, Reason = DecisionReason.ServerTcpOnly };
        var pass = new SynDecision { Verdict = SynVerdict.Pass, Reason = DecisionReason.ServerSpeaksMptcp };

        Assert.Multiple(() =>
        {
            Assert.That(CachePassLogSampler.IsRoutineCachePass(intercept, signal: null), Is.False, "intercepts stay at Information");
            Assert.That(CachePassLogSampler.IsRoutineCachePass(pass, new ProxySignal(SignalKind.Probe, 7, 1)), Is.False, "another proxy's probe stays at Information");
        });
    }

    [TestCase(DecisionReason.JoinTokenForeign, false, true)]
    [TestCase(DecisionReason.JoinTokenForeign, true, false)]
    [TestCase(DecisionReason.JoinTokenOwned, false, false)]
    public void IsRoutineJoinPass_ForeignJoinNotParked_True(DecisionReason reason, bool parked, bool expected)
    {
        var decision = new SynDecision { Verdict = reason == DecisionReason.JoinTokenOwned ? SynVerdict.InterceptJoin : SynVerdict.Pass, Reason = reason };

        Assert.That(CachePassLogSampler.IsRoutineJoinPass(decision, parked), Is.EqualTo(expected));
    }
}
