using FsCheck;
using FsCheck.Fluent;
using ProxySelection.Negotiation.Simulation;

namespace ProxySelection.Negotiation.Tests.Simulation;

/// <summary>
/// Spoofed signals in whole chains: a box that puts forged, replayed, truncated, oversized or unknown-version
/// MP_PROXY on every SYN and SYN/ACK changes nothing but what stripping MP_PROXY at the same place changes —
/// i.e. every such option is treated as absent, through the real codec and key ring.
/// </summary>
public class SpoofingTests
{
    private static readonly MiddleboxBehavior[] Spoofers =
    [
        MiddleboxBehavior.ForgeWrongKey,
        MiddleboxBehavior.ReplayOtherFlow,
        MiddleboxBehavior.TruncateOption,
        MiddleboxBehavior.OversizeOption,
        MiddleboxBehavior.UnknownVersion,
    ];

    internal static string Summary(ChainOutcome outcome) => string.Join(Environment.NewLine, outcome.Connections);

    internal static ChainSpec WithHop(ChainSpec spec, int position, HopSpec hop)
    {
        var hops = spec.Hops.ToList();
        hops.Insert(position, hop);
        return spec with { Hops = hops };
    }

    [FsCheck.NUnit.Property(MaxTest = 1_000, QuietOnSuccess = true)]
    public Property Spoofer_AnywhereInAnyChain_SameOutcomeAsStrippingThere() =>
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed =>
        {
            var random = new Random(seed);
            var chain = ChainGenerator.Generate(seed, hostile: random.Next(2) == 0);
            int position = random.Next(0, chain.Hops.Count + 1);
            var spoofer = Spoofers[random.Next(Spoofers.Length)];
            var spoofed = ChainSimulator.Run(WithHop(chain, position, new MiddleboxHop(spoofer)), seed);
            var stripped = ChainSimulator.Run(WithHop(chain, position, new MiddleboxHop(MiddleboxBehavior.StripMpProxy)), seed);
            Assert.That(Summary(spoofed), Is.EqualTo(Summary(stripped)), $"seed {seed}: {spoofed.Spec}");
            ChainProperties.Check(seed, spoofed.Spec, exactPolicy: false);
        });

    [FsCheck.NUnit.Property(MaxTest = 1_000, QuietOnSuccess = true)]
    public Property ProxyWithAnotherOperatorsKey_BehavesAsANonPAwareProxy() =>
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed =>
        {
            var chain = ChainGenerator.Generate(seed, hostile: false);
            var proxies = chain.Hops.Select((hop, i) => (hop, i)).Where(x => x.hop is ProxyHop).ToList();
            if (proxies.Count == 0)
            {
                return;
            }

            var (hop, index) = proxies[new Random(seed).Next(proxies.Count)];
            var foreign = chain.Hops.ToList();
            foreign[index] = (ProxyHop)hop with { ForeignKey = true };
            var stock = chain.Hops.ToList();
            stock[index] = (ProxyHop)hop with { Mode = SignalingMode.Implicit };
            var a = ChainSimulator.Run(chain with { Hops = foreign }, seed);
            var b = ChainSimulator.Run(chain with { Hops = stock }, seed);
            Assert.That(Summary(a), Is.EqualTo(Summary(b)), $"seed {seed}: {a.Spec}");
        });

    [Test]
    public void EverySpoofer_OnTheProbesPath_ProberStillHolds([ValueSource(nameof(Spoofers))] MiddleboxBehavior spoofer)
    {
        // The spoofer sits in front of a TCP-only server and puts a "Defer" on its answers to the probe.
        var spec = new ChainSpec(ClientMptcp: true, ServerMptcp: false,
            [new ProxyHop(1, ProxyRole.Downgrade), new ProxyHop(2, ProxyRole.Downgrade), new MiddleboxHop(spoofer)]);
        var outcome = ChainSimulator.Run(spec, seed: 11);
        Assert.Multiple(() =>
        {
            foreach (var c in outcome.Connections)
            {
                Assert.That(c.Holders, Is.EqualTo(new[] { new Holder(1, 1, ProxyRole.Downgrade) }), outcome.ToString());
                Assert.That(c.ClientGotMptcp, Is.True);
                Assert.That(c.Violations, Is.Empty);
            }
        });
    }

    [Test]
    public void EverySpoofer_OnTheClientsSyn_ProxiesStillNegotiate([ValueSource(nameof(Spoofers))] MiddleboxBehavior spoofer)
    {
        // A believed "Claim" on the client's SYN would make every proxy pass it as an already-held leg.
        var spec = new ChainSpec(ClientMptcp: true, ServerMptcp: false,
            [new MiddleboxHop(spoofer), new ProxyHop(1, ProxyRole.Downgrade, SelectionPolicy.NearestServer), new ProxyHop(2, ProxyRole.Downgrade, SelectionPolicy.NearestServer)]);
        var outcome = ChainSimulator.Run(spec, seed: 12);
        Assert.Multiple(() =>
        {
            foreach (var c in outcome.Connections)
            {
                Assert.That(c.Holders, Is.EqualTo(new[] { new Holder(3, 2, ProxyRole.Downgrade) }), outcome.ToString());
                Assert.That(c.Violations, Is.Empty);
            }
        });
    }
}
