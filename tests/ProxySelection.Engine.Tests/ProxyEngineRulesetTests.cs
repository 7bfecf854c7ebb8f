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

    [TestCase(ProxyRole.Downgrade, SignalingMode.Explicit, true, false)]
    [TestCase(ProxyRole.Downgrade, SignalingMode.Implicit, true, true)]
    [TestCase(ProxyRole.Upgrade, SignalingMode.Implicit, false, false)]
    public void RulesetOptions_KernelFastPath_PassForDowngradeInterceptOnlyWithoutAClaimToSign(ProxyRole role, SignalingMode mode, bool pass, bool intercept)
    {
        var options = ProxyEngine.RulesetOptions(new ProxyEngineOptions
        {
            KeyRing = Ring, KernelFastPath = true, Negotiation = new NegotiatorOptions { Role = role, Mode = mode },
        });

        Assert.That((options.FastPathPass, options.FastPathIntercept), Is.EqualTo((pass, intercept)));
        Assert.That(options.HandshakeSetSeconds, Is.EqualTo(3), "the handshake set lives the adoption timeout");
    }

    [TestCase(SignalingMode.Explicit)]
    [TestCase(SignalingMode.Implicit)]
    public void RulesetOptions_KernelSigned_ExplicitModeInterceptsInTheKernelToo(SignalingMode mode)
    {
        var options = ProxyEngine.RulesetOptions(new ProxyEngineOptions
        {
            KeyRing = Ring, KernelFastPath = true, KernelSigning = true, Negotiation = new NegotiatorOptions { Role = ProxyRole.Downgrade, Mode = mode },
        }, kernelSigned: true);

        Assert.That((options.FastPathPass, options.FastPathIntercept, options.KernelSigned), Is.EqualTo((true, true, true)),
            "the kernel writes the Claim a cache-hit intercept's SYN/ACK needs");
    }

    [Test]
    public void RulesetOptions_KernelSigningAskedButNotOpen_ExplicitModeKeepsTheQueue()
    {
        var options = ProxyEngine.RulesetOptions(new ProxyEngineOptions
        {
            KeyRing = Ring, KernelFastPath = true, KernelSigning = true, Negotiation = new NegotiatorOptions { Role = ProxyRole.Downgrade, Mode = SignalingMode.Explicit },
        });

        Assert.That((options.FastPathIntercept, options.KernelSigned), Is.EqualTo((false, false)), "a kernel that refused the signer signs nothing");
    }

    [Test]
    public void RulesetOptions_FastPathOff_NoFastPath() =>
        Assert.That(ProxyEngine.RulesetOptions(new ProxyEngineOptions { KeyRing = Ring }).FastPath, Is.False);
}
