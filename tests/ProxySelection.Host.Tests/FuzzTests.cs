using ProxySelection.Wire.Json;
using System.Text.Json;
using ProxySelection.Wire;
using ProxySelection.Wire.Fuzz;

namespace ProxySelection.Host.Tests;

/// <summary>The fuzz harness, bounded for CI: the wire parse path, the rewriter, and our JSON decoder over mutated packets.</summary>
public class FuzzTests
{
    [Test]
    public void Fuzz_50000MutatedInputsSeed1_NoCrashThroughWireAndDecoder()
    {
        var corpus = FuzzHarness.Corpus(VectorFiles.DirectoryOrNull);
        using var output = new MemoryStream();
        using var lines = new JsonLines(output);

        var report = FuzzHarness.Run(seed: 1, count: 50_000, corpus, extraTarget: input =>
        {
            output.SetLength(0);
            lines.WritePacket(input, frame: null);
            // Whatever the input, the decoder prints one well-formed JSON object (a packet or an error).
            using var doc = JsonDocument.Parse(output.ToArray());
        });

        Assert.That(report.Crash, Is.Null, report.Crash?.ToString());
        using (Assert.EnterMultipleScope())
        {
            Assert.That(report.Inputs, Is.EqualTo(50_000));
            Assert.That(report.Parsed, Is.GreaterThan(10_000), "mutations should leave many packets parseable");
            Assert.That(report.Depth.MptcpParsed, Is.GreaterThan(5_000), "mutations should reach MPTCP suboptions");
            Assert.That(report.Depth.MptcpRefused, Is.GreaterThan(500), "mutations should produce malformed suboptions");
            Assert.That(report.Depth.Inserts, Is.GreaterThan(1_000), "mutations should reach the rewriter");
        }
    }

    [Test]
    public void Mutator_SameSeed_GivesTheSameInputs()
    {
        var corpus = FuzzHarness.Corpus();
        var a = new Mutator(7, corpus);
        var b = new Mutator(7, corpus);
        var bufferA = new byte[Mutator.MaxInputLength];
        var bufferB = new byte[Mutator.MaxInputLength];
        for (int i = 0; i < 2_000; i++)
        {
            int lengthA = a.Next(bufferA);
            int lengthB = b.Next(bufferB);
            Assert.That(bufferA.AsSpan(0, lengthA).SequenceEqual(bufferB.AsSpan(0, lengthB)), Is.True, $"input {i}");
        }
    }

    [Test]
    public void Run_TargetThrowsOtherThanWireException_ReportsCrashWithTheInputHex()
    {
        string? seen = null;
        var report = FuzzHarness.Run(seed: 3, count: 1_000, FuzzHarness.Corpus(), extraTarget: input =>
        {
            if (input.Length > 40)
            {
                seen = Convert.ToHexStringLower(input);
                throw new InvalidOperationException("planted");
            }
        });

        Assert.That(report.Crash, Is.Not.Null);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(report.Crash!.InputHex, Is.EqualTo(seen));
            Assert.That(report.Crash.Exception, Is.TypeOf<InvalidOperationException>());
            Assert.That(report.Inputs, Is.EqualTo(report.Crash.Number + 1));
            Assert.That(report.Crash.ToString(), Does.Contain(seen));
        }
    }

    [Test]
    public void Run_TargetThrowsWireException_IsNotACrash()
    {
        var report = FuzzHarness.Run(seed: 3, count: 1_000, FuzzHarness.Corpus(),
            extraTarget: _ => throw new WireException(WireError.Truncated, 0, "planted"));
        Assert.That(report.Crash, Is.Null);
        Assert.That(report.Inputs, Is.EqualTo(1_000));
    }
}
