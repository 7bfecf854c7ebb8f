using System.Net;
using ProxySelection.Engine.Kernel;
using ProxySelection.Negotiation;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Engine.Tests;

/// <summary>What the engine hands the kernel signer is the option the engine's own signer writes, less the tag.</summary>
public sealed class KernelSigningConfigTests
{
    private static readonly byte[] Key = [.. Enumerable.Range(1, 32).Select(i => (byte)i)];

    [TestCase(ProxyRole.Downgrade, SignalKind.Claim)]
    [TestCase(ProxyRole.Upgrade, SignalKind.Upgrade)]
    public void Config_PrefixesAreTheEngineSignersOptionBytesBeforeTheTag(ProxyRole role, SignalKind upstream)
    {
        var negotiation = new NegotiatorOptions { Role = role, ProxyId = 7, Priority = 11 };
        var ring = new MpProxyKeyRing(5, Key);
        var config = KernelSigning.Config(negotiation, (negotiation.Priority, (byte)5, Key));

        var synAckFlow = MpProxyFlow.ForSyn(IPAddress.Parse("198.18.0.1").GetAddressBytes(), IPAddress.Parse("198.18.1.1").GetAddressBytes(), 40000, 80, 1000)
            .WithSynAck(2000);
        Span<byte> synAck = stackalloc byte[MpProxyOption.LongLength];
        int synAckLength = SignalCodec.Write(synAck, new ProxySignal(SignalKind.Claim, 7, 11), ring, synAckFlow);
        Assert.That(config.SynAck, Is.Not.Null);
        Assert.That(config.SynAck!.Prefix, Is.EqualTo(synAck[..(synAckLength - 2)].ToArray()));
        Assert.That((config.SynAck.TagLength, synAckLength), Is.EqualTo((2, MpProxyOption.ShortLength)));

        var synFlow = MpProxyFlow.ForSyn(IPAddress.Parse("198.18.1.2").GetAddressBytes(), IPAddress.Parse("198.18.2.1").GetAddressBytes(), 40001, 80, 3000);
        Span<byte> syn = stackalloc byte[MpProxyOption.LongLength];
        int synLength = SignalCodec.Write(syn, new ProxySignal(upstream, 7, 11), ring, synFlow);
        var leg = config.Syn[KernelSigning.UpstreamSlot];
        Assert.That(leg.Prefix, Is.EqualTo(syn[..(synLength - 8)].ToArray()), "kind, length, version, experiment id, message and priority, proxy id, key id, flags");
        Assert.That((leg.TagLength, synLength), Is.EqualTo((8, MpProxyOption.LongLength)));
        Assert.That(config.Key, Is.EqualTo(Key));
    }
}
