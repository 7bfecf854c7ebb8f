using ProxySelection.Engine;
using ProxySelection.Negotiation;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Engine.Tests;

public sealed class ProxyEngineRulesetTests
{
    private static readonly MpProxyKeyRing Ring = new(1, new byte[32]);

    [TestCase(SignalingMode.Explicit)]
    [TestCase(SignalingMode.Implicit)]
    public void RulesetOptions_DowngradeRole_QueuesOnlyMptcpSyns(SignalingMode mode)
    {
        var options = ProxyEngine.RulesetOptions(new ProxyEngineOptions { KeyRing = Ring, Negotiation = new NegotiatorOptions { Role = ProxyRole.Downgrade, Mode = mode } });

        Assert.That(options.QueueOnlyMptcpSyns, Is.True, "every SYN without an MPTCP option passes (NotMptcp): it need not leave the kernel");
        Assert.That(options.QueueOnlyMptcpSynAcks, Is.True, "nothing is learnt from a SYN/ACK without an MPTCP option");
        Assert.That(options.QueueSynAcks, Is.EqualTo(mode == SignalingMode.Explicit));
    }

    [TestCase(SignalingMode.Explicit)]
    [TestCase(SignalingMode.Implicit)]
    public void RulesetOptions_UpgradeRole_QueuesPlainTcpSyns(SignalingMode mode)
    {
        var options = ProxyEngine.RulesetOptions(new ProxyEngineOptions { KeyRing = Ring, Negotiation = new NegotiatorOptions { Role = ProxyRole.Upgrade, Mode = mode } });

        Assert.That(options.QueueOnlyMptcpSyns, Is.False, "an upgrading proxy acts on plain TCP SYNs");
        Assert.That(options.QueueOnlyMptcpSynAcks, Is.False, "an upgrading proxy learns TCP-only servers from answers without MPTCP");
    }
}
