using ProxySelection.Engine.Hook;
using ProxySelection.Engine.Tests.Flows;
using ProxySelection.Interception.Nfqueue;
using ProxySelection.Tests;
using ProxySelection.Wire;

namespace ProxySelection.Engine.Tests.Hook;

/// <summary>Spec §7.12: MP_PROXY (any version) leaves no segment that crosses the domain edge; everything else stays.</summary>
public sealed class DomainEdgeTests
{
    private static readonly byte[] MpCapable = [30, 4, 0x01, 0x01];
    private static readonly byte[] MpProxyV1 = [30, 4, 0xF1, 0xA5];
    private static readonly byte[] MpProxyV2 = [30, 4, 0xF2, 0xA5];
    private static readonly byte[] ForeignExperiment = [30, 4, 0xF1, 0x11];

    [TestCase(false)]
    [TestCase(true)]
    public void Strip_RemovesEveryMpProxyVersion_KeepsMpCapableAndAnotherExperiment_ChecksumsValid(bool ipv6)
    {
        var packet = PacketBuilder.Tcp(ipv6, [.. MpCapable, .. MpProxyV1, .. ForeignExperiment, .. MpProxyV2], []);
        var expected = PacketBuilder.Tcp(ipv6, [.. MpCapable, .. ForeignExperiment], []);

        int removed = DomainEdge.Strip(packet, out var rewritten, out int length);

        Assert.Multiple(() =>
        {
            Assert.That(removed, Is.EqualTo(2));
            Assert.That(rewritten!.AsSpan(0, length).ToArray(), Is.EqualTo(expected), "byte for byte what the sender would have sent without them");
            Assert.That(InternetChecksum.TryVerify(rewritten.AsSpan(0, length)), Is.EqualTo(WireError.None));
        });
    }

    [Test]
    public void Strip_NoMpProxy_NothingChanged()
    {
        var packet = PacketBuilder.Tcp(false, [.. MpCapable, .. ForeignExperiment], []);

        Assert.Multiple(() =>
        {
            Assert.That(DomainEdge.Strip(packet, out var rewritten, out _), Is.Zero);
            Assert.That(rewritten, Is.Null);
        });
    }

    [Test]
    public async Task OwnSynLeavingByAnEdgeInterface_IsStrippedNotSigned_ElsewhereUntouched()
    {
        await using var h = new EngineHarness(edgeInterfaces: ["lo"]);
        var syn = PacketBuilder.Tcp(false, [.. MpCapable, .. MpProxyV1], []);
        // Interface index 1 is lo in every namespace.
        h.Engine.OnPacket(new QueuedPacket(901, 0, NetfilterHook.PostRouting, 0, syn, outDeviceIndex: 1));
        h.Engine.OnPacket(new QueuedPacket(902, 0, NetfilterHook.PostRouting, 0, syn, outDeviceIndex: 0));

        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(901)!.Kind, Is.EqualTo("rewrite"));
            Assert.That(h.Verdicts.For(902)!.Kind, Is.EqualTo("accept"), "not an edge: the signer's business (nothing to sign here)");
            Assert.That(h.Engine.Counters.EdgeStripped, Is.EqualTo(1));
        });
    }
}
