using System.Diagnostics;

namespace ProxySelection.Wire.Fuzz;

/// <summary>An extra check run on every input (the Host tests pass the JSON decoder).</summary>
public delegate void FuzzTarget(ReadOnlySpan<byte> input);

/// <summary>What a run did: inputs tried, how many parsed as TCP packets, and the first crash if any.</summary>
public sealed record FuzzReport(
    long Inputs,
    long Parsed,
    IReadOnlyDictionary<WireError, long> Rejected,
    TimeSpan Elapsed,
    WirePath.Depth Depth,
    FuzzCrash? Crash);

/// <summary>A crash: which input (number and mutation), its bytes, and the exception.</summary>
public sealed record FuzzCrash(long Number, string Mutation, string InputHex, Exception Exception)
{
    public override string ToString() =>
        $"crash on input #{Number} ({Mutation}): {Exception.GetType().Name}: {Exception.Message}{Environment.NewLine}input: {InputHex}{Environment.NewLine}{Exception}";
}

/// <summary>
/// Feeds mutated inputs through <see cref="WirePath"/> (and an optional extra target). Seeded: the same seed,
/// corpus and count give the same inputs. Any exception other than <see cref="WireException"/> is a crash and stops
/// the run.
/// </summary>
public static class FuzzHarness
{
    public static FuzzReport Run(int seed, long count, IReadOnlyList<byte[]> corpus, FuzzTarget? extraTarget = null,
        TimeSpan? timeLimit = null, Action<long>? progress = null)
    {
        var mutator = new Mutator(seed, corpus);
        var input = new byte[Mutator.MaxInputLength];
        var scratch = new byte[WirePath.ScratchLength];
        var rejected = new Dictionary<WireError, long>();
        long parsed = 0;
        var depth = new WirePath.Depth();
        var clock = Stopwatch.StartNew();
        long i = 0;
        for (; i < count; i++)
        {
            if (timeLimit is { } limit && (i & 0x3FF) == 0 && clock.Elapsed > limit)
            {
                break;
            }

            if (progress is not null && i > 0 && i % 100_000 == 0)
            {
                progress(i);
            }

            int length = mutator.Next(input);
            var span = input.AsSpan(0, length);
            try
            {
                var outcome = WirePath.Exercise(span, scratch, depth);
                if (outcome == WireError.None)
                {
                    parsed++;
                }
                else
                {
                    rejected[outcome] = rejected.GetValueOrDefault(outcome) + 1;
                }

                extraTarget?.Invoke(span);
            }
            catch (WireException)
            {
                // The one exception malformed input may raise.
            }
#pragma warning disable CA1031 // A fuzz harness reports every other exception as a crash.
            catch (Exception e)
#pragma warning restore CA1031
            {
                var crash = new FuzzCrash(i, mutator.LastKind, Convert.ToHexStringLower(span), e);
                return new FuzzReport(i + 1, parsed, rejected, clock.Elapsed, depth, crash);
            }
        }

        return new FuzzReport(i, parsed, rejected, clock.Elapsed, depth, null);
    }

    /// <summary>The built-in seeds, plus every packet of the *.jsonl files in <paramref name="vectorsDirectory"/> when given.</summary>
    public static List<byte[]> Corpus(string? vectorsDirectory = null)
    {
        var corpus = SeedCorpus.Hex.Select(Convert.FromHexString).ToList();
        if (vectorsDirectory is null)
        {
            return corpus;
        }

        foreach (var file in Directory.GetFiles(vectorsDirectory, "*.jsonl").Order(StringComparer.Ordinal))
        {
            foreach (var line in File.ReadLines(file))
            {
                using var doc = System.Text.Json.JsonDocument.Parse(line);
                var packet = Convert.FromHexString(doc.RootElement.GetProperty("hex").GetString()!);
                if (packet.Length <= Mutator.MaxInputLength)
                {
                    corpus.Add(packet);
                }
            }
        }

        return corpus;
    }
}
