using System.Buffers.Binary;
using System.Numerics;

namespace ProxySelection.Interception.Bpf;

/// <summary>
/// The SHA-256 compression function (FIPS 180-4 §6.2.2) in managed code, to precompute HMAC midstates for the kernel
/// program: the BPF side then starts from the state after the 64-byte (key ^ ipad) and (key ^ opad) blocks and never
/// sees the key's block itself.
/// </summary>
public static class Sha256Block
{
    internal static readonly uint[] K =
    [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ];

    /// <summary>The initial hash value H(0).</summary>
    public static uint[] InitialState() =>
        [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

    /// <summary>Runs one compression of the 64-byte <paramref name="block"/> into <paramref name="state"/>.</summary>
    public static void Compress(Span<uint> state, ReadOnlySpan<byte> block)
    {
        if (state.Length != 8 || block.Length != 64)
        {
            throw new ArgumentException("state is 8 words, a block 64 bytes");
        }

        Span<uint> w = stackalloc uint[64];
        for (int i = 0; i < 16; i++)
        {
            w[i] = BinaryPrimitives.ReadUInt32BigEndian(block[(i * 4)..]);
        }

        for (int i = 16; i < 64; i++)
        {
            uint s0 = BitOperations.RotateRight(w[i - 15], 7) ^ BitOperations.RotateRight(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint s1 = BitOperations.RotateRight(w[i - 2], 17) ^ BitOperations.RotateRight(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }

        uint a = state[0], b = state[1], c = state[2], d = state[3], e = state[4], f = state[5], g = state[6], h = state[7];
        for (int i = 0; i < 64; i++)
        {
            uint t1 = h + (BitOperations.RotateRight(e, 6) ^ BitOperations.RotateRight(e, 11) ^ BitOperations.RotateRight(e, 25))
                + (g ^ (e & (f ^ g))) + K[i] + w[i];
            uint t2 = (BitOperations.RotateRight(a, 2) ^ BitOperations.RotateRight(a, 13) ^ BitOperations.RotateRight(a, 22))
                + ((a & b) | (c & (a | b)));
            h = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }

        state[0] += a;
        state[1] += b;
        state[2] += c;
        state[3] += d;
        state[4] += e;
        state[5] += f;
        state[6] += g;
        state[7] += h;
    }

    /// <summary>
    /// HMAC-SHA256 midstates (RFC 2104): the SHA-256 states after compressing (K ^ ipad) and (K ^ opad), K zero-padded to
    /// 64 bytes (keys longer than 64 bytes are not used here: the key ring's keys are 16..64 bytes).
    /// </summary>
    public static (uint[] Inner, uint[] Outer) HmacMidstates(ReadOnlySpan<byte> key)
    {
        if (key.Length > 64)
        {
            throw new ArgumentException("HMAC keys longer than the block are hashed first; not supported here", nameof(key));
        }

        Span<byte> pad = stackalloc byte[64];
        var inner = InitialState();
        var outer = InitialState();
        pad.Fill(0x36);
        for (int i = 0; i < key.Length; i++)
        {
            pad[i] ^= key[i];
        }

        Compress(inner, pad);
        pad.Fill(0x5c);
        for (int i = 0; i < key.Length; i++)
        {
            pad[i] ^= key[i];
        }

        Compress(outer, pad);
        return (inner, outer);
    }

    /// <summary>
    /// HMAC-SHA256 of <paramref name="message"/> from the midstates, the way the kernel program computes it: the message
    /// padded as the continuation of a 64-byte prefix, then one outer block over the inner digest.
    /// </summary>
    public static byte[] HmacFromMidstates(uint[] inner, uint[] outer, ReadOnlySpan<byte> message)
    {
        var state = (uint[])inner.Clone();
        int blocks = PaddedBlocks(message.Length);
        Span<byte> padded = stackalloc byte[blocks * 64];
        WritePadded(padded, message, 64);
        for (int b = 0; b < blocks; b++)
        {
            Compress(state, padded.Slice(b * 64, 64));
        }

        Span<byte> block = stackalloc byte[64];
        Span<byte> digest = stackalloc byte[32];
        for (int i = 0; i < 8; i++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(digest[(i * 4)..], state[i]);
        }

        WritePadded(block, digest, 64);
        var outState = (uint[])outer.Clone();
        Compress(outState, block);
        var mac = new byte[32];
        for (int i = 0; i < 8; i++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(mac.AsSpan(i * 4), outState[i]);
        }

        return mac;
    }

    /// <summary>How many 64-byte blocks a message of <paramref name="length"/> bytes takes once padded (0x80, zeros, 8-byte bit length).</summary>
    public static int PaddedBlocks(int length) => (length + 9 + 63) / 64;

    /// <summary>Writes <paramref name="message"/> padded, its bit length counting <paramref name="prefixBytes"/> already hashed.</summary>
    public static void WritePadded(Span<byte> destination, ReadOnlySpan<byte> message, int prefixBytes)
    {
        destination.Clear();
        message.CopyTo(destination);
        destination[message.Length] = 0x80;
        BinaryPrimitives.WriteUInt64BigEndian(destination[^8..], (ulong)(prefixBytes + message.Length) * 8);
    }
}
