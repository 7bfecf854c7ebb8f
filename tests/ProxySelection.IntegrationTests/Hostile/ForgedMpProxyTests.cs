using System.Net;
using ProxySelection.Lab;
using ProxySelection.Lab.Hostile;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.IntegrationTests.Hostile;

/// <summary>
/// Issue 12, hostile suite: forged, replayed, truncated and oversized MP_PROXY on MP_CAPABLE SYNs toward a server the
/// cache knows TCP-only, through a downgrade proxy in explicit mode with a known operator key. Spec §5.5/§5.6: anything
/// but a verified option is "absent", so the SYN gets the origin procedure (§7.3.1: TcpOnly → Intercept); a verified
/// Claim is a holder's upstream leg and passes untouched (§7.2 rule 4), also with a version-2 option beside it.
/// </summary>
[TestFixture]
[NonParallelizable]
[Category("Hostile")]
public sealed class ForgedMpProxyTests
{
    private static readonly byte[] Key = Convert.FromHexString("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F");
    private static readonly IPAddress Client = IPAddress.Parse(TwoPathTopology.ClientPath1V4);

    [Test]
    public async Task ForgedReplayedTruncatedOversizedMpProxyOnSyns_VerdictsAsTheSpecSays()
    {
        await using var lab = await StartAsync();
        var ring = new MpProxyKeyRing(1, Key);
        var wrongRing = new MpProxyKeyRing(1, Enumerable.Repeat((byte)0x42, 32).ToArray());
        ushort port = 20000;
        var cases = new List<(string Name, HostileSegment Segment, string Verdict)>();
        HostileSegment Syn(params byte[][] options) => new()
        {
            Source = Client,
            Destination = HostileLab.Server,
            SourcePort = port++,
            Sequence = 0x10000000u + port,
            Options = HostileOptions.Concat([HostileOptions.Mss(), HostileOptions.MpCapableSyn(), .. options]),
        };
        byte[] Claim(HostileSegment segment, MpProxyKeyRing signer)
        {
            var claim = MpProxyOption.Long(MpProxyMessage.Claim, 8, 9);
            signer.Sign(ref claim, segment.SynFlow());
            return HostileOptions.MpProxy(claim);
        }

        void Add(string name, string verdict, Func<HostileSegment, byte[][]> options)
        {
            var plain = Syn();
            cases.Add((name, plain with { Options = HostileOptions.Concat([HostileOptions.Mss(), HostileOptions.MpCapableSyn(), .. options(plain)]) }, verdict));
        }

        Add("no MP_PROXY", "Intercept", _ => []);
        Add("length 4 (presence on a SYN)", "Intercept", _ => [HostileOptions.RawMpProxy(4)]);
        Add("length 5", "Intercept", _ => [HostileOptions.RawMpProxy(5)]);
        Add("length 7", "Intercept", _ => [HostileOptions.RawMpProxy(7)]);
        Add("length 8 (short Claim, forged tag)", "Intercept", _ => [HostileOptions.RawMpProxy(8)]);
        Add("length 16 (long Claim, forged tag)", "Intercept", _ => [HostileOptions.RawMpProxy(16)]);
        Add("declared 40, runs past the header", "Intercept", _ => [HostileOptions.RawMpProxy(28, declaredLength: 40)]);
        Add("Claim signed with a wrong key", "Intercept", s => [Claim(s, wrongRing)]);
        Add("Claim with a wrong experiment id", "Intercept", s => [WithByte(Claim(s, ring), 3, 0x00)]);
        Add("version 2 alone", "Intercept", _ => [HostileOptions.RawMpProxy(16, version: 2)]);
        Add("verified Claim", "Pass", s => [Claim(s, ring)]);
        Add("verified Claim, version 2 beside it", "Pass", s => [Claim(s, ring), HostileOptions.RawMpProxy(8, version: 2)]);
        Add("verified Claim, another experiment's 0xF option beside it", "Pass", s => [Claim(s, ring), HostileOptions.RawMpProxy(8, experimentId: 0x5A)]);
        var signedFor = Syn();
        Add("Claim replayed from another flow", "Intercept", _ => [Claim(signedFor, ring)]);
        Add("two verified Claims (duplicate)", "Intercept", s => [Claim(s, ring), Claim(s, ring)]);

        var random = new Random(5);
        var result = await SegmentGenerator.SendAsync(lab.Client, [.. cases.Select(c => c.Segment.ToArray(random))]);
        Assert.That(result.Sent, Is.EqualTo(cases.Count), result.ToString());
        var verdicts = new List<string>();
        var wrong = new List<string>();
        foreach (var (name, segment, expected) in cases)
        {
            var seen = await lab.WaitForEventAsync("syn", e => e.Client == $"{Client}:{segment.SourcePort}");
            verdicts.Add($"{name}: {seen.Verdict}/{seen.Reason} (spec: {expected})");
            if (seen.Verdict != expected)
            {
                wrong.Add(verdicts[^1]);
            }
        }

        TestContext.Progress.WriteLine(string.Join('\n', verdicts));
        Assert.That(wrong, Is.Empty, "verdicts that differ from the spec");
    }

    private static byte[] WithByte(byte[] option, int index, byte value)
    {
        option[index] = value;
        return option;
    }

    /// <summary>The hostile lab with the operator key known to the test, the server's TCP-only state cached by one download.</summary>
    internal static async Task<HostileLab> StartAsync()
    {
        var keyFile = Path.Combine(Path.GetTempPath(), $"psel-hostile-{Environment.ProcessId}.key");
        await File.WriteAllTextAsync(keyFile, Convert.ToHexString(Key));
        try
        {
            var lab = await HostileLab.StartAsync("--key-file", keyFile, "--proxy-id", "1");
            await lab.PrimeAsync();
            return lab;
        }
        finally
        {
            File.Delete(keyFile);
        }
    }
}
